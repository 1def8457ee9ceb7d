"""Where a session's blobs live in the blob store (claim-check keys)."""

from __future__ import annotations

import re
import secrets

from lucid.errors import InvalidInput

__all__ = [
    "check_session_id",
    "compressed_key",
    "encrypted_key",
    "new_token",
    "part_key",
    "raw_key",
]

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


def check_session_id(session_id: str) -> str:
    """Return `session_id` if it is 32 lowercase hex characters, else raise InvalidInput."""
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise InvalidInput(f"session id must be 32 lowercase hex characters, got {session_id!r}")
    return session_id


def new_token() -> str:
    """A random suffix that makes an ingest blob's key unique to the request writing it."""
    return secrets.token_hex(8)


def raw_key(session_id: str, index: int, token: str) -> str:
    """The raw (plaintext) bytes of chunk `index` as one request wrote them.

    The token keeps racing writers apart: only the key that the chunk's commit names is
    the chunk; the others are garbage of requests that lost.
    """
    return f"sessions/{session_id}/raw/{index:08d}-{token}"


def part_key(session_id: str, index: int, offset: int, token: str) -> str:
    """Bytes one request added to the partial chunk `index`, starting at session `offset`."""
    return f"sessions/{session_id}/parts/{index:08d}-{offset:012d}-{token}"


def compressed_key(session_id: str, index: int) -> str:
    return f"sessions/{session_id}/zst/{index:08d}"


def encrypted_key(session_id: str, index: int) -> str:
    return f"sessions/{session_id}/enc/{index:08d}"
