"""Restore, verify and proofs of sealed sessions, and the tampering each of them catches."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid.crypto.aead import ChunkContext, encrypt_chunk
from lucid.errors import Conflict, DecryptionError, IntegrityError, NotFound
from lucid.integrity.leaves import LeafRecord, ciphertext_digest_of
from lucid.integrity.merkle import BLAKE3, root, verify_inclusion
from lucid.integrity.restore import proof_for, restore, verify_session
from lucid.integrity.sealed import sealed_leaves_key, store_sealed_leaves
from lucid.pipeline import stages
from lucid.pipeline.codecs import get_codec
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.lucid.conftest import (
    CHUNK,
    MakeRuntime,
    compressible,
    incompressible,
    push_chunks,
    record,
    sealed_session,
)

DATA = compressible(3 * CHUNK + 1234, seed=21)  # four chunks, the last one partial


def _blob_path(rt: Runtime, sid: str, index: int) -> Path:
    path = rt.settings.blobs_path / layout.encrypted_key(sid, index)
    os.chmod(path, 0o600)
    return path


def _flip_byte(rt: Runtime, sid: str, index: int, offset: int = 100) -> None:
    path = _blob_path(rt, sid, index)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _delete(rt: Runtime, sid: str, index: int) -> None:
    _blob_path(rt, sid, index).unlink()


def _swap(rt: Runtime, sid: str, a: int, b: int) -> None:
    pa, pb = _blob_path(rt, sid, a), _blob_path(rt, sid, b)
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)


@pytest.mark.parametrize(
    ("env", "data"),
    [
        ({}, DATA),
        ({}, incompressible(2 * CHUNK + 7)),
        ({"ENCRYPTION_ALGORITHM": "XChaCha20-Poly1305"}, DATA),
        ({"COMPRESSION_ALGORITHM": "gzip"}, DATA),
        ({"COMPRESSION_ALGORITHM": "none", "COMPRESSION_LEVEL": "0"}, incompressible(CHUNK + 1)),
        ({}, compressible(2 * CHUNK)),
        ({}, b""),
    ],
    ids=["zstd-aes", "random", "xchacha", "gzip", "none", "exact-multiple", "empty"],
)
def test_restore_yields_the_recording_byte_for_byte(
    make_runtime: MakeRuntime, env: dict[str, str], data: bytes
) -> None:
    rt = make_runtime(**env)
    sid = sealed_session(rt, data)
    session = rt.meta.get_session(sid)
    assert session["encryption"] == rt.settings.encryption_algorithm
    assert session["compression"] == rt.settings.compression_algorithm
    assert {c["encryption"] for c in rt.meta.list_chunks(sid)} == {session["encryption"]}
    pieces = list(restore(rt, sid))
    assert len(pieces) == session["tree_size"]
    assert b"".join(pieces) == data


def test_restore_with_the_wrong_recipient_key_fails_to_decrypt(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    with pytest.raises(DecryptionError):
        next(restore(rt, sid, X25519PrivateKey.generate()))


def test_restore_of_an_unsealed_session_is_a_conflict(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    push_chunks(rt, sid)
    with pytest.raises(Conflict, match="not sealed"):
        restore(rt, sid)
    assert not verify_session(rt, sid).ok


def test_verify_session_of_an_untouched_session_is_ok(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    report = verify_session(rt, sid)
    assert report.failures == []
    assert report.ok
    assert (report.chunks, report.chunks_verified) == (4, 4)
    assert report.anchor is not None
    assert report.anchor["status"] == "confirmed"
    assert report.anchor["root"] == rt.meta.get_session(sid)["merkle_root"]
    assert report.to_dict()["ok"] is True


def test_verify_session_without_an_anchor_is_not_ok(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    stages.seal_session(rt, sid, push_chunks(rt, sid))
    report = verify_session(rt, sid)
    assert report.chunks_verified == 4
    assert not report.ok
    assert any("no anchor receipt" in f for f in report.failures)


@pytest.mark.parametrize(
    ("tamper", "bad"),
    [
        (lambda rt, sid: _flip_byte(rt, sid, 2), [2]),
        (lambda rt, sid: _flip_byte(rt, sid, 3, offset=0), [3]),
        (lambda rt, sid: _delete(rt, sid, 1), [1]),
        (lambda rt, sid: _swap(rt, sid, 1, 2), [1, 2]),
    ],
    ids=["flip-byte", "flip-header", "delete", "swap"],
)
def test_tampered_stored_chunk_is_caught_naming_the_chunk(rt: Runtime, tamper, bad) -> None:
    sid = sealed_session(rt, DATA)
    tamper(rt, sid)
    with pytest.raises(IntegrityError) as caught:
        restore(rt, sid)  # eager: not one byte of a tampered session is produced
    assert caught.value.chunk_index == bad[0]
    assert f"chunk {bad[0]}" in str(caught.value)

    report = verify_session(rt, sid)
    assert not report.ok
    assert report.chunks_verified == 4 - len(bad)
    assert len(report.failures) == len(bad)
    for index, failure in zip(bad, report.failures, strict=True):
        assert f"chunk {index}" in failure


def test_chunk_tampered_after_restore_began_stops_the_stream_at_that_chunk(
    rt: Runtime,
) -> None:
    sid = sealed_session(rt, DATA)
    stream = restore(rt, sid)
    got = [next(stream), next(stream)]
    _flip_byte(rt, sid, 2)
    with pytest.raises(IntegrityError) as caught:
        next(stream)
    assert caught.value.chunk_index == 2
    assert b"".join(got) == DATA[: 2 * CHUNK]


@pytest.mark.parametrize(
    ("collection", "query_index", "field", "value", "message"),
    [
        ("chunks", 1, "ciphertext_digest", "ab" * 32, "chunk 1: chunk record ciphertext_digest: "),
        ("chunks", 2, "plaintext_len", 5, "chunk 2: chunk record plaintext_len: expected 65536"),
        ("chunks", 3, "final", False, "chunk 3: chunk record final: expected True, got False"),
        ("chunks", 0, "leaf_hash", "ef" * 32, "chunk 0: chunk record leaf_hash: expected "),
        ("sessions", None, "merkle_root", "cd" * 32, "rebuilds root .* expected cdcd"),
        ("sessions", None, "tree_size", 3, "over 4 leaves, expected .* over 3"),
        ("sessions", None, "bytes_received", 5, "session bytes_received: expected 197842 "),
        ("sessions", None, "chunk_size", 1000, "session chunk_size: expected 65536 "),
        ("sessions", None, "compression", "gzip", "session compression: expected zstd "),
        ("sessions", None, "chunk_count", 9, "session chunk_count: expected 4 "),
    ],
    ids=[
        "digest", "plaintext-len", "final", "leaf-hash-cache", "root", "tree-size",
        "bytes-received", "chunk-size", "compression", "chunk-count",
    ],
)  # fmt: skip
def test_altered_metadata_is_caught_before_any_byte_naming_chunk_and_field(
    rt: Runtime,
    collection: str,
    query_index: int | None,
    field: str,
    value: object,
    message: str,
) -> None:
    sid = sealed_session(rt, DATA)
    query: dict[str, object] = {"session_id": sid}
    if query_index is not None:
        query["index"] = query_index
    result = rt.meta.db[collection].update_one(query, {"$set": {field: value}})
    assert result.modified_count == 1
    with pytest.raises(IntegrityError, match=message):
        restore(rt, sid)  # no iteration: the check runs before the first yield
    report = verify_session(rt, sid)
    assert not report.ok
    assert any(re.search(message, failure) for failure in report.failures), report.failures
    if query_index is not None:
        assert report.chunks_verified == 3


def test_deleted_chunk_record_is_named(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    rt.meta.chunks.delete_one({"session_id": sid, "index": 2})
    with pytest.raises(IntegrityError, match="chunk 2: chunk record missing"):
        restore(rt, sid)
    assert any("chunk 2: chunk record missing" in f for f in verify_session(rt, sid).failures)


def test_edited_chunk_record_index_names_the_chunk_and_the_index(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    rt.meta.chunks.update_one({"session_id": sid, "index": 1}, {"$set": {"index": 7}})
    failures = verify_session(rt, sid).failures
    assert any("chunk record index: expected one of 0..3, got 7" in f for f in failures)
    assert any("chunk 1: chunk record missing" in f for f in failures)
    with pytest.raises(IntegrityError):
        restore(rt, sid)


def test_tampered_key_envelope_is_refused_before_any_byte(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    key = rt.meta.get_session(sid)["key"]
    wrapped = bytearray(bytes.fromhex(key["wrapped_private"]))
    wrapped[40] ^= 1
    edit = {"$set": {"key.wrapped_private": wrapped.hex()}}
    rt.meta.sessions.update_one({"session_id": sid}, edit)
    with pytest.raises(IntegrityError, match="session key"):
        restore(rt, sid)
    assert any("session key" in f for f in verify_session(rt, sid).failures)


def test_restore_does_not_read_bytes_received(rt: Runtime) -> None:
    """Content-Length comes from the sealed leaves: their sum is the recording's length."""
    from lucid.integrity.restore import prepare_restore

    sid = sealed_session(rt, DATA)
    assert prepare_restore(rt, sid).size == len(DATA)


def _forge_last_chunk(rt: Runtime, sid: str, plaintext: bytes) -> None:
    """What someone with write access to blobs and metadata can do: re-encrypt a chunk to
    the session public key and rewrite its records and the session root to match."""
    session = rt.meta.get_session(sid)
    index = int(session["tree_size"]) - 1
    compressed = get_codec(session["compression"], session["compression_level"]).compress(plaintext)
    ctx = ChunkContext(
        session_id=sid,
        index=index,
        final=True,
        compression=session["compression"],
        encryption=session["encryption"],
    )
    blob = encrypt_chunk(compressed, bytes.fromhex(session["key"]["session_public"]), ctx)
    _blob_path(rt, sid, index).write_bytes(blob)
    fields = {
        "plaintext_len": len(plaintext),
        "compressed_len": len(compressed),
        "ciphertext_len": len(blob),
        "ciphertext_digest": ciphertext_digest_of(blob).hex(),
    }
    rt.meta.chunks.update_one({"session_id": sid, "index": index}, {"$set": fields})
    docs = rt.meta.list_chunks(sid)
    hashes = [stages.leaf_record(d).leaf_hash() for d in docs]
    rt.meta.chunks.update_one(
        {"session_id": sid, "index": index}, {"$set": {"leaf_hash": hashes[index].hex()}}
    )
    size = sum(d["plaintext_len"] for d in docs)
    rt.meta.sessions.update_one(
        {"session_id": sid},
        {"$set": {"merkle_root": root(BLAKE3, hashes).hex(), "bytes_received": size}},
    )
    # The forger has the data dir too: the sealed leaf list is rewritten to match.
    rt.blobs.delete(sealed_leaves_key(sid))
    store_sealed_leaves(rt.blobs, sid, [stages.leaf_record(d) for d in docs])


def test_consistently_rewritten_records_are_caught_by_the_anchor_in_verify(
    rt: Runtime,
) -> None:
    sid = sealed_session(rt, DATA)
    _forge_last_chunk(rt, sid, b"nothing to see here")
    report = verify_session(rt, sid)
    assert report.chunks_verified == 4
    assert not report.ok
    assert any("anchored root: expected" in f for f in report.failures)


def test_restore_refuses_a_root_the_anchor_does_not_hold(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    _forge_last_chunk(rt, sid, b"nothing to see here")
    with pytest.raises(IntegrityError):
        b"".join(restore(rt, sid))


def test_proof_for_every_chunk_verifies_against_the_sealed_root(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    session = rt.meta.get_session(sid)
    sealed = bytes.fromhex(session["merkle_root"])
    for index in range(4):
        proof = proof_for(rt, sid, index)
        assert (proof["index"], proof["tree_size"], proof["hash"]) == (index, 4, "blake3")
        assert proof["merkle_root"] == session["merkle_root"]
        assert proof["anchor"]["root"] == session["merkle_root"]
        leaf_hash = LeafRecord.from_dict(proof["leaf"]).leaf_hash()
        assert leaf_hash.hex() == proof["leaf_hash"]
        path = [bytes.fromhex(h) for h in proof["proof"]]
        verify_inclusion(BLAKE3, leaf_hash, index, 4, path, sealed)


def test_proof_of_one_chunk_does_not_verify_another(rt: Runtime) -> None:
    sid = sealed_session(rt, DATA)
    sealed = bytes.fromhex(rt.meta.get_session(sid)["merkle_root"])
    proof = proof_for(rt, sid, 1)
    other = bytes.fromhex(proof_for(rt, sid, 2)["leaf_hash"])
    path = [bytes.fromhex(h) for h in proof["proof"]]
    with pytest.raises(IntegrityError):
        verify_inclusion(BLAKE3, other, 1, 4, path, sealed)


@pytest.mark.parametrize("index", [4, 100, -1])
def test_proof_for_an_out_of_range_index_is_not_found(rt: Runtime, index: int) -> None:
    sid = sealed_session(rt, DATA)
    with pytest.raises(NotFound, match=r"0\.\.3"):
        proof_for(rt, sid, index)


def test_a_deleted_leaf_list_is_refused_not_silently_replaced_by_the_records(
    rt: Runtime,
) -> None:
    sid = sealed_session(rt, DATA)
    rt.blobs.delete(sealed_leaves_key(sid))
    report = verify_session(rt, sid)
    assert not report.ok
    assert any("sealed leaf list" in failure for failure in report.failures), report.failures
    with pytest.raises(IntegrityError, match="sealed leaf list"):
        list(restore(rt, sid))
