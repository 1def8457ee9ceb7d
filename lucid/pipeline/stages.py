"""The per-chunk stages (compress → encrypt → hash) and the per-session seal and anchor.

Each function takes references (session id, chunk index, small dicts), reads its input
from the blob store and writes its output there. Every function may run twice — after a
retry, a redelivery or a duplicate in the seal's chord — and converges to the same stored
bytes: blobs are write-once (the first write wins) and chunk progress only moves forward.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any, TypedDict

from lucid.crypto.aead import encrypt_chunk
from lucid.errors import Conflict, IntegrityError, StaleSeal
from lucid.integrity.anchors import Receipt
from lucid.integrity.leaves import LeafRecord, ciphertext_digest_of
from lucid.integrity.merkle import BLAKE3, root
from lucid.integrity.sealed import store_sealed_leaves
from lucid.lifecycle.states import ChunkStage, SessionState, Trigger
from lucid.runtime import Runtime
from lucid.storage import layout

__all__ = [
    "ChunkRef",
    "LeafRef",
    "anchor_session",
    "compress_chunk",
    "encrypt_stage",
    "hash_chunk",
    "leaf_of",
    "seal_session",
]

log = logging.getLogger(__name__)


class ChunkRef(TypedDict, total=False):
    """What travels between the stages of one chunk: ids and lengths, never bytes."""

    session_id: str
    index: int
    final: bool
    plaintext_len: int
    compressed_len: int
    ciphertext_len: int
    raw_key: str  # the raw blob the chunk's record names (hash deletes it: no re-read)


class LeafRef(TypedDict):
    """The small, deterministic result of a chunk's last stage."""

    index: int
    leaf_hash: str


def _recorded(rt: Runtime, session_id: str, index: int, stage: ChunkStage) -> dict[str, Any]:
    """The chunk document if it already reached `stage`, else raise (input is gone)."""
    doc = rt.meta.get_chunk(session_id, index)
    if int(doc.get("stage", -1)) < stage:
        raise IntegrityError(
            f"input blob missing and chunk only reached stage {doc.get('stage')}",
            session_id=session_id,
            chunk_index=index,
        )
    return doc


def _raw_key(doc: dict[str, Any]) -> str:
    """The raw blob the chunk's commit named (ingest writes each under a unique key)."""
    key = doc.get("raw_key")
    if not key:
        raise IntegrityError(
            "chunk record names no raw blob", session_id=doc["session_id"], chunk_index=doc["index"]
        )
    return str(key)


def compress_chunk(rt: Runtime, session_id: str, index: int, final: bool) -> ChunkRef:
    """Compress the raw chunk into its compressed blob (skipped if a duplicate did it)."""
    params = rt.session_params(session_id)
    out_key = layout.compressed_key(session_id, index)
    doc = rt.meta.get_chunk(session_id, index)
    plaintext_len = int(doc["plaintext_len"])
    ref = ChunkRef(session_id=session_id, index=index, final=final, plaintext_len=plaintext_len)
    if doc.get("raw_key"):
        ref["raw_key"] = str(doc["raw_key"])
    try:
        if rt.blobs.exists(out_key):  # a retry, a redelivery or the seal's chord got here first
            ref["compressed_len"] = rt.blobs.size(out_key)
            return ref
    except FileNotFoundError:  # ... and its hash just dropped it: the record has the length
        return _with_recorded_length(rt, ref)
    try:
        with rt.blobs.view(_raw_key(doc)) as data:
            if len(data) != plaintext_len or len(data) > params.chunk_size:
                raise IntegrityError(
                    f"raw chunk is {len(data)} bytes, expected {plaintext_len} "
                    f"(chunk size {params.chunk_size})",
                    session_id=session_id,
                    chunk_index=index,
                )
            compressed = rt.codec(params).compress(data)
    except FileNotFoundError:  # the chunk is already hashed and its plaintext deleted
        return _with_recorded_length(rt, ref)
    # Recomputable from the raw chunk until the ciphertext is durable: no fsync needed.
    if rt.blobs.put(out_key, compressed, durable=False):
        ref["compressed_len"] = len(compressed)
    else:  # a duplicate's blob is there (its bytes are the ones kept), or was, if hashed since
        try:
            ref["compressed_len"] = rt.blobs.size(out_key)
        except FileNotFoundError:
            return _with_recorded_length(rt, ref)
    rt.meta.record_chunk(
        session_id, index, ChunkStage.COMPRESSED, {"final": final, **_lengths(ref)}
    )
    return ref


def _with_recorded_length(rt: Runtime, ref: ChunkRef) -> ChunkRef:
    """`ref` with the compressed length its chunk record holds: a duplicate compress whose
    chunk was hashed (and its plaintext and compressed blobs dropped) in the meantime."""
    doc = _recorded(rt, ref["session_id"], ref["index"], ChunkStage.COMPRESSED)
    ref["compressed_len"] = doc["compressed_len"]
    return ref


def encrypt_stage(rt: Runtime, ref: ChunkRef) -> ChunkRef:
    """Encrypt the compressed blob to the session's public key (per-chunk fresh key)."""
    session_id, index = ref["session_id"], ref["index"]
    out_key = layout.encrypted_key(session_id, index)
    out = ChunkRef(**ref)  # type: ignore[typeddict-item]
    if rt.blobs.exists(out_key):  # a duplicate encrypted it first; its bytes are the ones kept
        out["ciphertext_len"] = rt.blobs.size(out_key)
        return out
    params = rt.session_params(session_id)
    ctx = params.chunk_context(index, ref["final"])
    try:
        with rt.blobs.view(layout.compressed_key(session_id, index)) as compressed:
            blob = encrypt_chunk(compressed, params.session_public, ctx)
    except FileNotFoundError:
        out["ciphertext_len"] = rt.blobs.size(out_key)  # hashed meanwhile: intermediates gone
        return out
    written = rt.blobs.put(out_key, blob)
    out["ciphertext_len"] = len(blob) if written else rt.blobs.size(out_key)
    rt.meta.record_chunk(session_id, index, ChunkStage.ENCRYPTED, _lengths(out))
    return out


def hash_chunk(rt: Runtime, ref: ChunkRef) -> LeafRef:
    """Hash the stored ciphertext, commit the chunk's leaf and drop its plaintext blobs."""
    session_id, index = ref["session_id"], ref["index"]
    if not rt.blobs.exists(layout.compressed_key(session_id, index)):
        # The compressed blob is deleted only after the leaf is committed: a duplicate.
        return leaf_of(rt, session_id, index)
    params = rt.session_params(session_id)
    with rt.blobs.view(layout.encrypted_key(session_id, index)) as blob:
        ciphertext_len, digest = len(blob), ciphertext_digest_of(blob)
    leaf = LeafRecord(
        session_id=session_id,
        index=index,
        final=ref["final"],
        plaintext_len=ref["plaintext_len"],
        compressed_len=ref["compressed_len"],
        ciphertext_len=ciphertext_len,
        compression=params.compression,
        encryption=params.encryption,
        ciphertext_digest=digest,
    )
    leaf_hash = leaf.leaf_hash().hex()
    rt.meta.record_chunk(
        session_id,
        index,
        ChunkStage.HASHED,
        {**leaf.to_dict(), "leaf_hash": leaf_hash},
        journal=True,
    )
    # The leaf is durable: the plaintext and compressed copies must not stay at rest.
    raw_key = ref.get("raw_key") or _raw_key(rt.meta.get_chunk(session_id, index))
    rt.blobs.delete(raw_key)
    rt.blobs.delete(layout.compressed_key(session_id, index))
    return LeafRef(index=index, leaf_hash=leaf_hash)


def leaf_of(rt: Runtime, session_id: str, index: int) -> LeafRef:
    """The recorded leaf of an already hashed chunk (seal uses it for finished chunks)."""
    doc = _recorded(rt, session_id, index, ChunkStage.HASHED)
    return LeafRef(index=index, leaf_hash=doc["leaf_hash"])


def seal_session(rt: Runtime, session_id: str, results: list[LeafRef]) -> str:
    """Check every chunk's leaf, build the Merkle root and commit it (the seal).

    The STOPPING → STOPPED write that stores the root is the commit point; running this
    twice returns the root already committed.
    """
    session = rt.meta.get_session(session_id)
    if session["state"] == SessionState.STOPPED and session.get("merkle_root"):
        return str(session["merkle_root"])
    if session["state"] != SessionState.STOPPING:
        # A chord published before a chunk failed can still finish; a later stop reseals.
        raise StaleSeal(f"session {session_id} is {session['state']}, not STOPPING")
    count = int(session["chunk_count"])
    chunks = rt.meta.list_chunks(session_id, fields=_SEAL_FIELDS)
    indexes = [int(c["index"]) for c in chunks]
    if indexes != list(range(count)):
        raise IntegrityError(
            f"expected chunks 0..{count - 1}, got {len(indexes)} chunk records",
            session_id=session_id,
        )
    from_chord = {int(r["index"]): r["leaf_hash"] for r in results}
    leaf_hashes: list[bytes] = []
    leaves: list[LeafRecord] = []
    for doc in chunks:
        index = int(doc["index"])
        if int(doc.get("stage", -1)) < ChunkStage.HASHED:
            raise IntegrityError("chunk was never hashed", session_id=session_id, chunk_index=index)
        leaves.append(leaf_record(doc))
        recomputed = leaves[-1].leaf_hash().hex()
        for name, value in (("recorded", doc["leaf_hash"]), ("chord", from_chord.get(index))):
            if value is not None and value != recomputed:
                raise IntegrityError(
                    f"{name} leaf hash: expected {recomputed}, got {value}",
                    session_id=session_id,
                    chunk_index=index,
                )
        if doc.get("final", False) != (index == count - 1):
            raise IntegrityError(
                "final flag out of place", session_id=session_id, chunk_index=index
            )
        leaf_hashes.append(bytes.fromhex(recomputed))
    merkle_root = root(BLAKE3, leaf_hashes).hex()
    store_sealed_leaves(rt.blobs, session_id, leaves)
    try:
        rt.meta.apply_trigger(
            session_id,
            Trigger.STOP_COMPLETE,
            set_fields={
                "merkle_root": merkle_root,
                "tree_size": count,
                "sealed_at": datetime.now(UTC).isoformat(),
                "leaf_list": True,  # restore refuses a sealed session whose list went
            },
        )
    except Conflict:
        again = rt.meta.get_session(session_id)
        if again.get("merkle_root") == merkle_root:
            return merkle_root
        raise
    log.info("sealed session_id=%s chunks=%d root=%s", session_id, count, merkle_root)
    _drop_plaintext_leftovers(rt, session_id)
    return merkle_root


def _drop_plaintext_leftovers(rt: Runtime, session_id: str) -> None:
    """Once sealed, every committed chunk is hashed and its plaintext already gone; what is
    left under raw/, parts/ and zst/ was written by requests that lost a race or died
    before their commit (or by a duplicate stage): plaintext that must not stay at rest."""
    for folder in ("raw", "parts", "zst"):
        removed = rt.blobs.delete_prefix(f"sessions/{session_id}/{folder}/")
        if removed:
            log.info("dropped session_id=%s leftovers=%s blobs=%d", session_id, folder, removed)


def anchor_session(rt: Runtime, session_id: str) -> dict[str, Any]:
    """Submit (or re-confirm) the session's root with the anchor; record the receipt."""
    session = rt.meta.get_session(session_id)
    merkle_root, size = session["merkle_root"], int(session["tree_size"])
    existing = rt.meta.get_anchor(session_id)
    if existing and existing.get("root") == merkle_root:
        receipt = rt.anchor.confirm(Receipt.from_dict(existing))
    else:
        receipt = rt.anchor.submit(session_id, bytes.fromhex(merkle_root), size)
    data = receipt.to_dict()
    rt.meta.record_anchor(session_id, data)
    anchored_at = datetime.now(UTC).isoformat()
    rt.meta.update_session(session_id, {"anchor": data, "anchor_at": anchored_at})
    log.info(
        "anchored session_id=%s status=%s ref=%s", session_id, receipt.status, receipt.reference
    )
    return data


_LEAF_FIELDS = tuple(f.name for f in dataclasses.fields(LeafRecord))
# What the seal reads of each chunk record: the leaf, its recorded hash and its stage.
_SEAL_FIELDS = (*_LEAF_FIELDS, "stage", "leaf_hash")


def leaf_record(chunk_doc: dict[str, Any]) -> LeafRecord:
    """The leaf record stored in a chunk document (extra fields ignored)."""
    return LeafRecord.from_dict({name: chunk_doc[name] for name in _LEAF_FIELDS})


def _lengths(ref: ChunkRef) -> dict[str, Any]:
    keys = ("plaintext_len", "compressed_len", "ciphertext_len")
    return {k: ref[k] for k in keys if k in ref}  # type: ignore[literal-required]
