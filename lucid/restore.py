"""Read a sealed session back: verify every chunk against the sealed root, then decrypt.

The root is the authority. Recorded leaf hashes are first checked to rebuild exactly the
sealed root (so a tampered chunk record is caught before a byte is sent), then each chunk's
stored ciphertext is hashed and compared with its leaf before it is decrypted (AEAD then
authenticates it a second time) and decompressed with the chunk size as a hard bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid import layout
from lucid.aead import decrypt_chunk
from lucid.anchors import Receipt
from lucid.errors import Conflict, IntegrityError, LucidError, NotFound
from lucid.keys import SessionKeyEnvelope, load_recipient_private, unwrap_session_key
from lucid.leaves import ciphertext_digest_of
from lucid.merkle import BLAKE3, inclusion_proof, inclusion_proofs, root, verify_inclusion
from lucid.runtime import Runtime, SessionParams
from lucid.stages import leaf_record
from lucid.states import SessionState

__all__ = [
    "Sealed",
    "VerifyReport",
    "check_anchor",
    "proof_for",
    "restore",
    "sealed_chunks",
    "verify_session",
]


@dataclass
class VerifyReport:
    """The outcome of `verify_session`: ok, or the list of what failed."""

    session_id: str
    merkle_root: str
    chunks: int
    chunks_verified: int = 0
    anchor: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.chunks_verified == self.chunks

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "ok": self.ok,
            "merkle_root": self.merkle_root,
            "chunks": self.chunks,
            "chunks_verified": self.chunks_verified,
            "anchor": self.anchor,
            "failures": self.failures,
        }


class Sealed(NamedTuple):
    """A sealed session, its chunk records and their leaf hashes (which rebuild its root)."""

    session: dict[str, Any]
    chunks: list[dict[str, Any]]
    leaf_hashes: list[bytes]


def sealed_chunks(rt: Runtime, session_id: str) -> Sealed:
    """The sealed session and its chunk records, checked to rebuild the sealed root."""
    session = rt.meta.get_session(session_id)
    if session["state"] != SessionState.STOPPED or not session.get("merkle_root"):
        raise Conflict(f"session {session_id} is {session['state']}, not sealed yet")
    chunks = rt.meta.list_chunks(session_id)
    hashes = [leaf_record(c).leaf_hash() for c in chunks]
    rebuilt = root(BLAKE3, hashes).hex()
    if len(chunks) != session["tree_size"] or rebuilt != session["merkle_root"]:
        raise IntegrityError(
            f"chunk records rebuild root {rebuilt} over {len(chunks)} chunks, expected "
            f"{session['merkle_root']} over {session['tree_size']}",
            session_id=session_id,
        )
    return Sealed(session, chunks, hashes)


def proof_for(rt: Runtime, session_id: str, index: int) -> dict[str, Any]:
    """Everything a third party needs to check chunk `index` offline: leaf, path, root."""
    session, chunks, hashes = sealed_chunks(rt, session_id)
    if not 0 <= index < len(chunks):
        raise NotFound(f"session {session_id} has chunks 0..{len(chunks) - 1}, not {index}")
    return {
        "session_id": session_id,
        "index": index,
        "tree_size": len(chunks),
        "leaf": leaf_record(chunks[index]).to_dict(),
        "leaf_hash": hashes[index].hex(),
        "proof": [h.hex() for h in inclusion_proof(BLAKE3, hashes, index)],
        "merkle_root": session["merkle_root"],
        "hash": "blake3",
        "anchor": session.get("anchor"),
    }


def check_anchor(rt: Runtime, session: dict[str, Any]) -> Receipt:
    """The anchor must still hold this session's sealed root; return the confirmed receipt.

    The metadata store alone is not trusted: someone able to rewrite chunk records and the
    stored root consistently is stopped here, because the anchor holds the original root.
    """
    session_id, sealed = session["session_id"], session["merkle_root"]
    recorded = rt.meta.get_anchor(session_id)
    if recorded is None:
        raise IntegrityError(
            "no anchor receipt recorded for the sealed root", session_id=session_id
        )
    receipt = rt.anchor.confirm(Receipt.from_dict(recorded))
    anchored_for = receipt.details.get("session_id", session_id)
    if receipt.root != sealed or anchored_for != session_id:
        raise IntegrityError(
            f"anchored root: expected {sealed} for this session, got {receipt.root} "
            f"for session {anchored_for}",
            session_id=session_id,
        )
    return receipt


def _check_stored(rt: Runtime, session_id: str, chunk: dict[str, Any]) -> bytes:
    """The stored ciphertext of a chunk, after checking it matches the committed leaf."""
    index = int(chunk["index"])
    try:
        blob = rt.blobs.get(layout.encrypted_key(session_id, index))
    except FileNotFoundError:
        raise IntegrityError(
            "stored chunk is missing", session_id=session_id, chunk_index=index
        ) from None
    expected = leaf_record(chunk)
    actual = replace(
        expected, ciphertext_digest=ciphertext_digest_of(blob), ciphertext_len=len(blob)
    )
    if actual != expected:
        raise IntegrityError(
            f"stored ciphertext digest: expected {expected.ciphertext_digest.hex()}, "
            f"got {actual.ciphertext_digest.hex()}",
            session_id=session_id,
            chunk_index=index,
        )
    return blob


def verify_session(rt: Runtime, session_id: str) -> VerifyReport:
    """Check every stored chunk, its inclusion proof and the anchor; never raises on tamper."""
    session = rt.meta.get_session(session_id)
    report = VerifyReport(
        session_id, session.get("merkle_root") or "", session.get("tree_size") or 0
    )
    try:
        session, chunks, hashes = sealed_chunks(rt, session_id)
    except LucidError as exc:
        report.failures.append(str(exc))
        return report
    sealed = bytes.fromhex(session["merkle_root"])
    proofs = inclusion_proofs(BLAKE3, hashes)
    for chunk, leaf_hash, proof in zip(chunks, hashes, proofs, strict=True):
        index = int(chunk["index"])
        try:
            _check_stored(rt, session_id, chunk)
            verify_inclusion(BLAKE3, leaf_hash, index, len(hashes), proof, sealed)
            report.chunks_verified += 1
        except LucidError as exc:
            report.failures.append(str(exc))
    try:
        report.anchor = check_anchor(rt, session).to_dict()
    except LucidError as exc:
        report.failures.append(f"anchor: {exc}")
    return report


def restore(
    rt: Runtime, session_id: str, private_key: X25519PrivateKey | None = None
) -> Iterator[bytes]:
    """Yield the original recording chunk by chunk, verifying each one first.

    The checks against the root and the anchor, and of every stored chunk, run before the
    first byte, so a tampered session fails with a clean error instead of a cut stream;
    each chunk is checked again as it streams, since the store may change in between.
    """
    session, chunks, _ = sealed_chunks(rt, session_id)
    check_anchor(rt, session)
    for chunk in chunks:
        _check_stored(rt, session_id, chunk)
    return _restore_iter(rt, session, chunks, private_key)


def _restore_iter(
    rt: Runtime,
    session: dict[str, Any],
    chunks: list[dict[str, Any]],
    private_key: X25519PrivateKey | None,
) -> Iterator[bytes]:
    session_id = session["session_id"]
    recipient = private_key or load_recipient_private(rt.settings.keys_path)
    envelope = SessionKeyEnvelope.from_dict(session["key"])
    session_key = unwrap_session_key(envelope, recipient, session_id)
    params = SessionParams.from_session(session)
    codec = rt.codec(params)
    for chunk in chunks:
        index = int(chunk["index"])
        blob = _check_stored(rt, session_id, chunk)
        ctx = params.chunk_context(index, bool(chunk["final"]))
        data = codec.decompress(decrypt_chunk(blob, session_key, ctx), params.chunk_size)
        if len(data) != int(chunk["plaintext_len"]):
            raise IntegrityError(
                f"plaintext length: expected {chunk['plaintext_len']}, got {len(data)}",
                session_id=session_id,
                chunk_index=index,
            )
        yield data
