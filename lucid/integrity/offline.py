"""Restore on the user's machine: verify and decrypt a session with no server trusted.

The server (`GET /api/v1/sessions/{id}/bundle`) hands over a *bundle* — the sealed leaf
list, the session's wrapped key envelope and the signed ledger entry of its root — and
each chunk's stored ciphertext. None of it is trusted; with the ledger's public key
(pinned by the user) and the recipient private key (held only by the user):

1. the ledger entry's entry_hash is recomputed over its body and its Ed25519 signature
   checked against the pinned ledger key; it must name this session;
2. the leaf list must rebuild the entry's root over the entry's tree_size leaves
   (RFC 9162 shape, BLAKE3) and each leaf i must say index i, this session, and final
   only for the last one;
3. the envelope is unwrapped with the recipient key (the session id is bound into the
   wrap) to a private key whose public half is the envelope's session_public;
4. each chunk's ciphertext must have its leaf's length and BLAKE3 digest, then AEAD
   decrypts it (bound to session, index, final flag, algorithms) and it decompresses to
   exactly the leaf's plaintext_len.

A failure raises IntegrityError (or DecryptionError) naming the chunk and the field;
nothing here opens a server connection, so a server that can read no recording (no
process holds recipient.key) still serves everything this needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid.crypto.aead import ChunkContext, decrypt_chunk
from lucid.crypto.keys import SessionKeyEnvelope, unwrap_session_key
from lucid.errors import IntegrityError, InvalidInput
from lucid.integrity.leaves import LeafRecord, ciphertext_digest_of
from lucid.integrity.ledger import LedgerEntry, entry_hash_of
from lucid.integrity.merkle import BLAKE3, root
from lucid.pipeline.codecs import get_codec
from lucid.settings import COMPRESSION_LEVELS

__all__ = ["Bundle", "decrypt_chunks", "verify_bundle"]

_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


@dataclass(frozen=True)
class Bundle:
    """What an offline restorer gets from the server, parsed but not yet trusted."""

    session_id: str
    leaves: list[LeafRecord]
    envelope: SessionKeyEnvelope
    ledger_entry: LedgerEntry
    ledger_key: str

    @classmethod
    def from_dict(cls, data: Any) -> Bundle:
        """Parse the bundle JSON; bad input raises InvalidInput."""
        if not isinstance(data, dict):
            raise InvalidInput(f"bundle: expected an object, got {type(data).__name__}")
        try:
            session_id = data["session_id"]
            leaves = [LeafRecord.from_dict(leaf) for leaf in data["leaves"]]
            envelope = SessionKeyEnvelope.from_dict(data["key"])
            entry = LedgerEntry.from_dict(data["ledger_entry"])
            ledger_key = data["ledger_key"]
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"bundle: expected field {exc}, got none") from None
        if not isinstance(session_id, str) or not isinstance(ledger_key, str):
            raise InvalidInput("bundle: expected session_id and ledger_key strings")
        return cls(session_id, leaves, envelope, entry, ledger_key)


def _fail(message: str, session_id: str, index: int | None = None) -> IntegrityError:
    return IntegrityError(message, session_id=session_id, chunk_index=index)


def verify_bundle(bundle: Bundle, ledger_key: Ed25519PublicKey) -> None:
    """Steps 1 and 2: the signed entry and the leaf list it commits to; None or raise."""
    sid, entry = bundle.session_id, bundle.ledger_entry
    pinned = ledger_key.public_bytes(*_RAW).hex()
    if bundle.ledger_key != pinned:
        raise _fail(f"ledger key: expected {pinned} (pinned), got {bundle.ledger_key}", sid)
    computed = entry_hash_of(entry.body())
    if computed != entry.entry_hash:
        raise _fail(f"ledger entry_hash: expected {computed}, got {entry.entry_hash}", sid)
    try:
        ledger_key.verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))
    except InvalidSignature:
        raise _fail(
            "ledger entry signature: expected one by the pinned ledger key, got one that "
            "does not verify",
            sid,
        ) from None
    if entry.session_id != sid:
        raise _fail(f"ledger entry session_id: expected {sid}, got {entry.session_id}", sid)
    leaves = bundle.leaves
    rebuilt = root(BLAKE3, [leaf.leaf_hash() for leaf in leaves]).hex()
    if len(leaves) != entry.tree_size or rebuilt != entry.root:
        raise _fail(
            f"sealed leaf list rebuilds root {rebuilt} over {len(leaves)} leaves, expected "
            f"{entry.root} over {entry.tree_size} (anchored)",
            sid,
        )
    last = len(leaves) - 1
    for i, leaf in enumerate(leaves):
        for name, expected, got in (
            ("index", i, leaf.index),
            ("final", i == last, leaf.final),
            ("session_id", sid, leaf.session_id),
        ):
            if expected != got:
                raise _fail(f"sealed leaf {name}: expected {expected}, got {got}", sid, i)


def decrypt_chunks(
    bundle: Bundle,
    ledger_key: Ed25519PublicKey,
    recipient: X25519PrivateKey,
    fetch: Callable[[int], bytes],
) -> Iterator[bytes]:
    """Verify the bundle, then yield each chunk's plaintext after checking its ciphertext
    (`fetch(index)` returns the stored bytes) against its anchored leaf (steps 1-4)."""
    verify_bundle(bundle, ledger_key)
    sid = bundle.session_id
    session_key = unwrap_session_key(bundle.envelope, recipient, sid)
    for leaf in bundle.leaves:
        blob = fetch(leaf.index)
        if len(blob) != leaf.ciphertext_len:
            raise _fail(
                f"ciphertext_len: expected {leaf.ciphertext_len}, got {len(blob)}", sid, leaf.index
            )
        digest = ciphertext_digest_of(blob)
        if digest != leaf.ciphertext_digest:
            raise _fail(
                f"ciphertext_digest: expected {leaf.ciphertext_digest.hex()}, got {digest.hex()}",
                sid,
                leaf.index,
            )
        codec = get_codec(leaf.compression, COMPRESSION_LEVELS.get(leaf.compression, (0, 0))[0])
        ctx = ChunkContext(sid, leaf.index, leaf.final, leaf.compression, leaf.encryption)
        data = codec.decompress(decrypt_chunk(blob, session_key, ctx), leaf.plaintext_len)
        if len(data) != leaf.plaintext_len:
            raise _fail(
                f"plaintext_len: expected {leaf.plaintext_len}, got {len(data)}", sid, leaf.index
            )
        yield data
