"""One error hierarchy for the whole core; `api/` maps each class to an HTTP status."""

from __future__ import annotations


class LucidError(Exception):
    """Base class of every error Lucid raises on purpose."""

    code = "lucid_error"


class ConfigError(LucidError):
    """A setting is missing or has a value outside what is allowed."""

    code = "config_error"


class InvalidInput(LucidError):
    """A caller passed a malformed id, parameter or payload."""

    code = "invalid_input"


class NotFound(LucidError):
    """A session, chunk or record does not exist."""

    code = "not_found"


class Unauthorized(LucidError):
    """No bearer token, or one that is expired, forged or malformed (says which)."""

    code = "unauthorized"


class Forbidden(LucidError):
    """A valid token that lacks the scope the request needs."""

    code = "forbidden"


class Gone(LucidError):
    """The session was crypto-shredded: its tombstone remains, its bytes do not."""

    code = "gone"


class TooManySessions(LucidError):
    """MAX_CONCURRENT_SESSIONS sessions are already live; try again after `retry_after` s."""

    code = "too_many_sessions"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(LucidError):
    """The request is valid but the session is in a state that does not allow it."""

    code = "conflict"


class InvalidTransition(Conflict, ValueError):
    """A state-machine transition that the transition table does not allow."""

    code = "invalid_transition"


class StaleSeal(Conflict):
    """A seal for a session no longer STOPPING (it failed, or was recovered, meanwhile)."""

    code = "stale_seal"


class OffsetMismatch(Conflict):
    """An append stated an offset other than the session's committed length."""

    code = "offset_mismatch"

    def __init__(self, expected: int, got: int | None, detail: str = "") -> None:
        super().__init__(f"expected offset {expected}, got {got}{detail}")
        self.expected = expected
        self.got = got


class TooLarge(InvalidInput):
    """Input exceeds a configured size limit."""

    code = "too_large"


class IntegrityError(LucidError):
    """Stored data does not match what was committed; names the chunk when known."""

    code = "integrity_error"

    def __init__(
        self, message: str, *, session_id: str | None = None, chunk_index: int | None = None
    ) -> None:
        where = []
        if session_id is not None:
            where.append(f"session {session_id}")
        if chunk_index is not None:
            where.append(f"chunk {chunk_index}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.session_id = session_id
        self.chunk_index = chunk_index


class DecryptionError(IntegrityError):
    """AEAD authentication failed: wrong key, flipped bit, swapped or truncated chunk."""

    code = "decryption_error"


class DecompressionBombError(IntegrityError):
    """A compressed chunk would inflate past the configured chunk size."""

    code = "decompression_bomb"


class ProofError(IntegrityError):
    """A Merkle root or inclusion proof does not verify."""

    code = "proof_error"


class LedgerError(IntegrityError):
    """The anchor ledger has an edited, removed, reordered or badly signed entry."""

    code = "ledger_error"


class KeyMaterialError(LucidError):
    """Key material is missing, unreadable or has unsafe permissions."""

    code = "key_error"


class DecryptionNotHere(KeyMaterialError):
    """This process is not in the restore role: it holds no key that decrypts recordings
    (API_DECRYPTS=false). The user decrypts on their side (`lucid get --key`)."""

    code = "decryption_not_here"


class AnchorError(LucidError):
    """The anchoring service refused a root or answered something we cannot use."""

    code = "anchor_error"


class TransientError(LucidError):
    """A failure worth retrying (a service briefly unreachable, a timeout)."""

    code = "transient_error"


class AnchorUnavailable(AnchorError, TransientError):
    """The anchoring service timed out or answered 5xx; retry later."""

    code = "anchor_unavailable"


class DependencyUnavailable(TransientError):
    """A service a request needs (metadata store, broker, Redis) did not answer in time."""

    code = "dependency_unavailable"

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(f"{dependency} unavailable: {message}; retry later")
        self.dependency = dependency


class InsufficientStorage(TransientError):
    """The disk (or quota) that holds the blobs is full; worth retrying once space returns."""

    code = "insufficient_storage"
