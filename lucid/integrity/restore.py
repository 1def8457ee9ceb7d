"""Read a sealed session back, failing closed: every byte returned is proven by the root.

The sealed root, held by the anchor, is the one authority. Nothing that restore, verify
or the download read is taken from a field that the root does not cover unless it is
checked against it first:

=====================  ==================  ============================================
field                  read from           proven by
=====================  ==================  ============================================
merkle_root, tree_size session             equal to the anchored root and size
leaf records           sealed leaf list    rebuild merkle_root over tree_size leaves
                       (`lucid.integrity.sealed`)    (older sessions: the chunk records do)
index, final, lengths, sealed leaf         covered by the root; leaf i must have index
algorithms, digest                         i, only the last is final, same session id
chunk records          chunks collection   every leaf field and the cached leaf_hash
                                           equal the sealed leaf ("chunk N: <field>:
                                           expected X, got Y"); a missing index is
                                           "chunk N: chunk record missing"
stored ciphertext      blob store          length and BLAKE3 digest equal the sealed
                                           leaf's, then AEAD (which binds session,
                                           index, final flag and algorithms)
compression,           session             equal to every sealed leaf's
encryption
chunk_size             session             each non-final leaf's plaintext_len equals
                                           it, the last is at most it; decompression
                                           is bounded by the leaf's plaintext_len
bytes_received         session             equal to the sum of the leaves'
                                           plaintext_len; Content-Length is that sum
chunk_count            session             equal to tree_size
key (envelope)         session             unwraps with the recipient key to a private
                                           key whose public half is session_public
state                  session             must be STOPPED
=====================  ==================  ============================================

Not read by restore, so not checked: compression_level (decoding does not use it),
metadata and timestamps. `verify_session` reports every failure it finds; `restore`
raises the first one before the first byte is produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid.crypto.aead import ChunkContext, decrypt_chunk
from lucid.crypto.keys import (
    SessionKeyEnvelope,
    unwrap_session_key,
)
from lucid.crypto.roles import load_recipient_private_for
from lucid.errors import (
    Conflict,
    IntegrityError,
    InvalidInput,
    KeyMaterialError,
    LucidError,
    NotFound,
)
from lucid.integrity.anchors import Receipt
from lucid.integrity.leaves import LeafRecord, ciphertext_digest_of
from lucid.integrity.merkle import BLAKE3, inclusion_proof, inclusion_proofs, root, verify_inclusion
from lucid.integrity.sealed import load_sealed_leaves
from lucid.lifecycle.shred import check_not_destroyed
from lucid.lifecycle.states import SessionState
from lucid.pipeline.codecs import get_codec
from lucid.pipeline.stages import leaf_record
from lucid.runtime import Runtime
from lucid.settings import COMPRESSION_LEVELS
from lucid.storage import layout

__all__ = [
    "Sealed",
    "VerifyReport",
    "check_anchor",
    "check_stored",
    "open_chunk",
    "prepare_restore",
    "proof_for",
    "restore",
    "restore_sealed",
    "sealed_chunks",
    "session_key_for",
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


@dataclass
class Sealed:
    """A sealed session, its root-proven leaves and what disagrees with them."""

    session: dict[str, Any]
    leaves: list[LeafRecord]
    leaf_hashes: list[bytes]
    problems: list[IntegrityError]

    @property
    def size(self) -> int:
        """Bytes of the original recording: the sum of the sealed plaintext lengths."""
        return sum(leaf.plaintext_len for leaf in self.leaves)

    def raise_first(self) -> None:
        """Fail closed: the first disagreement, if any."""
        if self.problems:
            raise self.problems[0]


def _leaves_from_records(session_id: str, records: list[dict[str, Any]]) -> list[LeafRecord]:
    leaves = []
    for position, record in enumerate(records):
        try:
            leaves.append(leaf_record(record))
        except (KeyError, InvalidInput) as exc:
            raise IntegrityError(
                f"chunk record is not a leaf record: {exc}",
                session_id=session_id,
                chunk_index=record.get("index", position),
            ) from None
    return leaves


def sealed_chunks(rt: Runtime, session_id: str) -> Sealed:
    """The sealed session's leaves, proven to rebuild the sealed root, and every field of
    the session and its chunk records that disagrees with them (see the module table)."""
    session = rt.meta.get_session(session_id)
    check_not_destroyed(session)  # Gone (410): the tombstone has no bytes to prove
    if session["state"] != SessionState.STOPPED or not session.get("merkle_root"):
        raise Conflict(f"session {session_id} is {session['state']}, not sealed yet")
    records = rt.meta.list_chunks(session_id)
    leaves = load_sealed_leaves(rt.blobs, session_id)
    from_records = leaves is None
    if leaves is None and session.get("leaf_list"):
        raise IntegrityError(
            "sealed leaf list: expected the list stored at the seal, got none (deleted?)",
            session_id=session_id,
        )
    if leaves is None:  # sealed before the leaf list was stored: the records must do
        leaves = _leaves_from_records(session_id, records)
    hashes = [leaf.leaf_hash() for leaf in leaves]
    rebuilt = root(BLAKE3, hashes).hex()
    source = "chunk records" if from_records else "sealed leaf list"
    if len(leaves) != session.get("tree_size") or rebuilt != session["merkle_root"]:
        raise IntegrityError(
            f"{source} rebuilds root {rebuilt} over {len(leaves)} leaves, expected "
            f"{session['merkle_root']} over {session.get('tree_size')}",
            session_id=session_id,
        )
    problems = _check_leaves(session_id, leaves)
    problems += _check_records(session_id, leaves, hashes, records)
    problems += _check_session(session, leaves)
    return Sealed(session, leaves, hashes, problems)


def _check_leaves(session_id: str, leaves: list[LeafRecord]) -> list[IntegrityError]:
    problems = []
    last = len(leaves) - 1
    for i, leaf in enumerate(leaves):
        for name, expected, got in (
            ("index", i, leaf.index),
            ("final", i == last, leaf.final),
            ("session_id", session_id, leaf.session_id),
        ):
            if expected != got:
                problems.append(
                    IntegrityError(
                        f"sealed leaf {name}: expected {expected}, got {got}",
                        session_id=session_id,
                        chunk_index=i,
                    )
                )
    return problems


def _check_records(
    session_id: str,
    leaves: list[LeafRecord],
    hashes: list[bytes],
    records: list[dict[str, Any]],
) -> list[IntegrityError]:
    problems: list[IntegrityError] = []
    strays: list[IntegrityError] = []  # reported after the chunks they left without a record
    by_index: dict[int, dict[str, Any]] = {}
    for record in records:
        index = record.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(leaves):
            strays.append(
                IntegrityError(
                    f"chunk record index: expected one of 0..{len(leaves) - 1}, got {index}",
                    session_id=session_id,
                )
            )
            continue
        by_index[index] = record
    for i, (leaf, leaf_hash) in enumerate(zip(leaves, hashes, strict=True)):
        found = by_index.get(i)
        if found is None:
            problems.append(
                IntegrityError("chunk record missing", session_id=session_id, chunk_index=i)
            )
            continue
        expected = {**leaf.to_dict(), "leaf_hash": leaf_hash.hex()}
        for name, want in expected.items():
            got = found.get(name)
            if got != want or type(got) is not type(want):
                problems.append(
                    IntegrityError(
                        f"chunk record {name}: expected {want}, got {got}",
                        session_id=session_id,
                        chunk_index=i,
                    )
                )
    return problems + strays


def _check_session(session: dict[str, Any], leaves: list[LeafRecord]) -> list[IntegrityError]:
    session_id = session["session_id"]
    problems = []

    def check(name: str, expected: object, got: object, how: str) -> None:
        if expected != got or type(expected) is not type(got):
            problems.append(
                IntegrityError(
                    f"session {name}: expected {expected} ({how}), got {got}",
                    session_id=session_id,
                )
            )

    size = sum(leaf.plaintext_len for leaf in leaves)
    check("bytes_received", size, session.get("bytes_received"), "sum of the sealed leaves")
    check("chunk_count", len(leaves), session.get("chunk_count"), "sealed leaves")
    for name in ("compression", "encryption"):
        sealed = sorted({getattr(leaf, name) for leaf in leaves})
        if sealed and sealed != [session.get(name)]:
            check(name, ", ".join(sealed), session.get(name), "the sealed leaves")
    raw_size = session.get("chunk_size")
    chunk_size = raw_size if isinstance(raw_size, int) and not isinstance(raw_size, bool) else -1
    # Ingest cuts every chunk but the last at exactly chunk_size, the last at most that.
    for leaf in leaves:
        length = leaf.plaintext_len
        if not (length <= chunk_size if leaf.final else length == chunk_size):
            want = f"at least {leaf.plaintext_len}" if leaf.final else str(leaf.plaintext_len)
            check("chunk_size", want, raw_size, f"sealed plaintext_len of chunk {leaf.index}")
            break
    try:
        SessionKeyEnvelope.from_dict(session.get("key") or {})
    except InvalidInput as exc:
        problems.append(IntegrityError(f"session key envelope: {exc}", session_id=session_id))
    return problems


def proof_for(rt: Runtime, session_id: str, index: int) -> dict[str, Any]:
    """Everything a third party needs to check chunk `index` offline: leaf, path, root."""
    sealed = sealed_chunks(rt, session_id)
    leaves, hashes = sealed.leaves, sealed.leaf_hashes
    if not 0 <= index < len(leaves):
        raise NotFound(f"session {session_id} has chunks 0..{len(leaves) - 1}, not {index}")
    return {
        "session_id": session_id,
        "index": index,
        "tree_size": len(leaves),
        "leaf": leaves[index].to_dict(),
        "leaf_hash": hashes[index].hex(),
        "proof": [h.hex() for h in inclusion_proof(BLAKE3, hashes, index)],
        "merkle_root": sealed.session["merkle_root"],
        "hash": "blake3",
        "anchor": sealed.session.get("anchor"),
    }


def check_anchor(rt: Runtime, session: dict[str, Any]) -> Receipt:
    """The anchor must still hold this session's sealed root and size; return the receipt.

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
    if receipt.tree_size != session.get("tree_size"):
        raise IntegrityError(
            f"session tree_size: expected {receipt.tree_size} (anchored), "
            f"got {session.get('tree_size')}",
            session_id=session_id,
        )
    return receipt


def check_stored(rt: Runtime, session_id: str, leaf: LeafRecord) -> bytes:
    """The stored ciphertext of a chunk, after checking it against its sealed leaf."""
    index = leaf.index
    try:
        blob = rt.blobs.get(layout.encrypted_key(session_id, index))
    except FileNotFoundError:
        raise IntegrityError(
            "stored ciphertext missing", session_id=session_id, chunk_index=index
        ) from None
    if len(blob) != leaf.ciphertext_len:
        raise IntegrityError(
            f"stored ciphertext_len: expected {leaf.ciphertext_len}, got {len(blob)}",
            session_id=session_id,
            chunk_index=index,
        )
    digest = ciphertext_digest_of(blob)
    if digest != leaf.ciphertext_digest:
        raise IntegrityError(
            f"stored ciphertext_digest: expected {leaf.ciphertext_digest.hex()}, "
            f"got {digest.hex()}",
            session_id=session_id,
            chunk_index=index,
        )
    return blob


def session_key_for(
    rt: Runtime, session: dict[str, Any], private_key: X25519PrivateKey | None
) -> X25519PrivateKey:
    """The session's private key, unwrapped with `private_key` or the deployment's."""
    session_id = session["session_id"]
    recipient = private_key or load_recipient_private_for(rt.settings.roles, rt.settings.keys_path)
    try:
        envelope = SessionKeyEnvelope.from_dict(session.get("key") or {})
    except InvalidInput as exc:
        raise IntegrityError(f"session key envelope: {exc}", session_id=session_id) from None
    return unwrap_session_key(envelope, recipient, session_id)


def verify_session(rt: Runtime, session_id: str) -> VerifyReport:
    """Check every stored chunk, its inclusion proof and the anchor; never raises on tamper."""
    session = rt.meta.get_session(session_id)
    report = VerifyReport(
        session_id, session.get("merkle_root") or "", session.get("tree_size") or 0
    )
    try:
        sealed = sealed_chunks(rt, session_id)
    except LucidError as exc:
        report.failures.append(str(exc))
        return report
    report.failures += [str(problem) for problem in sealed.problems]
    bad_records = {p.chunk_index for p in sealed.problems if p.chunk_index is not None}
    root_bytes = bytes.fromhex(session["merkle_root"])
    proofs = inclusion_proofs(BLAKE3, sealed.leaf_hashes)
    for leaf, leaf_hash, proof in zip(sealed.leaves, sealed.leaf_hashes, proofs, strict=True):
        try:
            check_stored(rt, session_id, leaf)
            verify_inclusion(BLAKE3, leaf_hash, leaf.index, len(proofs), proof, root_bytes)
            if leaf.index not in bad_records:
                report.chunks_verified += 1
        except LucidError as exc:
            report.failures.append(str(exc))
    try:
        session_key_for(rt, session, None)
    except KeyMaterialError:
        pass  # this process holds no recipient key: restore will check the envelope
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

    Every check of the module table, the anchor, every stored chunk and the session key
    run before the first byte, so a tampered session fails with a clean error naming the
    chunk and field instead of a cut stream; each chunk is checked again as it streams,
    since the store may change in between.
    """
    return restore_sealed(rt, prepare_restore(rt, session_id), private_key)


def prepare_restore(rt: Runtime, session_id: str) -> Sealed:
    """Every check that restore makes before its first byte; raise the first failure."""
    sealed = sealed_chunks(rt, session_id)
    sealed.raise_first()
    check_anchor(rt, sealed.session)
    for leaf in sealed.leaves:
        check_stored(rt, session_id, leaf)
    return sealed


def restore_sealed(
    rt: Runtime, sealed: Sealed, private_key: X25519PrivateKey | None = None
) -> Iterator[bytes]:
    """Decrypt a session that `prepare_restore` checked; the key is unwrapped now."""
    session_key = session_key_for(rt, sealed.session, private_key)
    return _restore_iter(rt, sealed, session_key)


def _restore_iter(rt: Runtime, sealed: Sealed, session_key: X25519PrivateKey) -> Iterator[bytes]:
    session_id = sealed.session["session_id"]
    for leaf in sealed.leaves:
        yield open_chunk(rt, session_id, leaf, session_key)


def open_chunk(
    rt: Runtime, session_id: str, leaf: LeafRecord, session_key: X25519PrivateKey
) -> bytes:
    """The plaintext of one sealed chunk: its stored ciphertext checked against the leaf,
    then decrypted and decompressed to exactly the sealed length."""
    blob = check_stored(rt, session_id, leaf)
    # Algorithms come from the sealed leaf; the level does not matter for decoding.
    codec = get_codec(leaf.compression, COMPRESSION_LEVELS.get(leaf.compression, (0, 0))[0])
    ctx = ChunkContext(session_id, leaf.index, leaf.final, leaf.compression, leaf.encryption)
    # The bound is the sealed length, not the session's mutable chunk_size.
    data = codec.decompress(decrypt_chunk(blob, session_key, ctx), leaf.plaintext_len)
    if len(data) != leaf.plaintext_len:
        raise IntegrityError(
            f"plaintext_len: expected {leaf.plaintext_len}, got {len(data)}",
            session_id=session_id,
            chunk_index=leaf.index,
        )
    return data
