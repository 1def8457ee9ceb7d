"""The per-chunk stages, the seal and the anchor, run in-process on real stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lucid.crypto.aead import encryption_overhead
from lucid.errors import IntegrityError, StaleSeal
from lucid.integrity.ledger import SignedLedger
from lucid.integrity.merkle import BLAKE3, root
from lucid.integrity.restore import restore
from lucid.lifecycle.states import ChunkStage, Trigger
from lucid.pipeline import stages
from lucid.runtime import Runtime
from lucid.storage import layout
from lucid.storage.fs import FileBlobStore
from tests.lucid.conftest import CHUNK, compressible, incompressible, push_chunks, record

DATA = compressible(3 * CHUNK + 1234)  # four chunks, the last one partial


def _ledger(rt: Runtime) -> SignedLedger:
    return rt.ledger


def _expected_root(leaves: list[stages.LeafRef]) -> str:
    return root(BLAKE3, [bytes.fromhex(leaf["leaf_hash"]) for leaf in leaves]).hex()


def test_full_push_seals_the_merkle_root_of_the_leaf_hashes(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    assert [leaf["index"] for leaf in leaves] == [0, 1, 2, 3]
    merkle_root = stages.seal_session(rt, sid, leaves)
    assert merkle_root == _expected_root(leaves)
    session = rt.meta.get_session(sid)
    assert (session["state"], session["merkle_root"], session["tree_size"]) == (
        "STOPPED",
        merkle_root,
        4,
    )
    docs = rt.meta.list_chunks(sid)
    assert [d["stage"] for d in docs] == [ChunkStage.HASHED] * 4
    assert [d["leaf_hash"] for d in docs] == [leaf["leaf_hash"] for leaf in leaves]
    assert [stages.leaf_record(d).leaf_hash().hex() for d in docs] == [
        leaf["leaf_hash"] for leaf in leaves
    ]


def test_each_stage_records_its_lengths_and_moves_the_chunk_forward(rt: Runtime) -> None:
    sid, _ = record(rt, compressible(CHUNK + 10))
    ref = stages.compress_chunk(rt, sid, 0, False)
    assert ref["plaintext_len"] == CHUNK
    assert 0 < ref["compressed_len"] < CHUNK // 2
    assert rt.meta.get_chunk(sid, 0)["stage"] == ChunkStage.COMPRESSED
    ref = stages.encrypt_stage(rt, ref)
    assert ref["ciphertext_len"] == ref["compressed_len"] + encryption_overhead("AES-256-GCM")
    assert rt.blobs.size(layout.encrypted_key(sid, 0)) == ref["ciphertext_len"]
    assert rt.meta.get_chunk(sid, 0)["stage"] == ChunkStage.ENCRYPTED
    stages.hash_chunk(rt, ref)
    doc = rt.meta.get_chunk(sid, 0)
    assert doc["stage"] == ChunkStage.HASHED
    assert (doc["plaintext_len"], doc["compressed_len"], doc["ciphertext_len"]) == (
        ref["plaintext_len"],
        ref["compressed_len"],
        ref["ciphertext_len"],
    )


def test_every_stage_run_twice_converges_on_the_first_write(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    count = 4
    leaves = []
    for i in range(count):
        final = i == count - 1
        first = stages.compress_chunk(rt, sid, i, final)
        again = stages.compress_chunk(rt, sid, i, final)
        assert again == first
        enc1 = stages.encrypt_stage(rt, first)
        stored = rt.blobs.get(layout.encrypted_key(sid, i))
        enc2 = stages.encrypt_stage(rt, again)
        assert enc2 == enc1
        assert rt.blobs.get(layout.encrypted_key(sid, i)) == stored
        leaf1 = stages.hash_chunk(rt, enc1)
        leaf2 = stages.hash_chunk(rt, enc2)
        assert leaf2 == leaf1
        assert rt.blobs.get(layout.encrypted_key(sid, i)) == stored
        leaves.append(leaf1)
    merkle_root = stages.seal_session(rt, sid, leaves + leaves)  # duplicates in the chord
    assert merkle_root == _expected_root(leaves)


def test_whole_chain_replayed_after_hashing_returns_the_same_leaf(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    stored = [rt.blobs.get(layout.encrypted_key(sid, i)) for i in range(4)]
    replayed = push_chunks(rt, sid)
    assert replayed == leaves
    assert [rt.blobs.get(layout.encrypted_key(sid, i)) for i in range(4)] == stored
    assert stages.seal_session(rt, sid, replayed) == _expected_root(leaves)


def test_hashing_drops_plaintext_blobs_but_late_duplicates_still_report_lengths(
    rt: Runtime,
) -> None:
    sid, _ = record(rt, compressible(CHUNK + 10))
    ref = stages.encrypt_stage(rt, stages.compress_chunk(rt, sid, 0, False))
    raw_key = rt.meta.get_chunk(sid, 0)["raw_key"]
    assert rt.blobs.exists(raw_key)
    leaf = stages.hash_chunk(rt, ref)
    assert not rt.blobs.exists(raw_key)
    assert not rt.blobs.exists(layout.compressed_key(sid, 0))
    assert rt.blobs.exists(layout.encrypted_key(sid, 0))

    late = stages.compress_chunk(rt, sid, 0, False)
    assert (late["plaintext_len"], late["compressed_len"]) == (
        ref["plaintext_len"],
        ref["compressed_len"],
    )
    assert not rt.blobs.exists(layout.compressed_key(sid, 0))  # nothing recreated at rest
    late = stages.encrypt_stage(rt, late)
    assert late["ciphertext_len"] == ref["ciphertext_len"]
    assert stages.hash_chunk(rt, late) == leaf
    assert rt.meta.get_chunk(sid, 0)["stage"] == ChunkStage.HASHED


def test_compress_refuses_a_raw_chunk_larger_than_the_chunk_size(rt: Runtime) -> None:
    sid, _ = record(rt, b"")
    raw_key = rt.meta.get_chunk(sid, 0)["raw_key"]
    rt.blobs.delete(raw_key)
    rt.blobs.put(raw_key, incompressible(CHUNK + 1))
    with pytest.raises(IntegrityError) as caught:
        stages.compress_chunk(rt, sid, 0, True)
    assert caught.value.chunk_index == 0
    assert not rt.blobs.exists(layout.compressed_key(sid, 0))


@pytest.mark.parametrize("delta", [-1, 1])
def test_compress_refuses_a_raw_blob_whose_length_is_not_the_committed_one(
    rt: Runtime, delta: int
) -> None:
    sid, _ = record(rt, compressible(2 * CHUNK + 100))
    doc = rt.meta.get_chunk(sid, 2)
    data = rt.blobs.get(doc["raw_key"])
    rt.blobs.delete(doc["raw_key"])
    rt.blobs.put(doc["raw_key"], data[:-1] if delta < 0 else data + b"x")
    with pytest.raises(IntegrityError, match=r"expected 100") as caught:
        stages.compress_chunk(rt, sid, 2, True)
    assert caught.value.chunk_index == 2
    assert not rt.blobs.exists(layout.compressed_key(sid, 2))


def test_compress_reads_the_raw_blob_the_chunk_record_names_not_an_orphan(rt: Runtime) -> None:
    data = compressible(CHUNK + 10)
    sid, _ = record(rt, data)
    # A request that lost the race left its own raw blob for chunk 0: never read.
    rt.blobs.put(layout.raw_key(sid, 0, "0rphan"), incompressible(CHUNK))
    push_chunks(rt, sid)
    assert rt.blobs.exists(layout.raw_key(sid, 0, "0rphan"))
    stages.seal_session(rt, sid, push_chunks(rt, sid))
    stages.anchor_session(rt, sid)
    assert b"".join(restore(rt, sid)) == data


def test_seal_twice_returns_the_committed_root(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    first = stages.seal_session(rt, sid, leaves)
    history = rt.meta.get_session(sid)["history"]
    assert stages.seal_session(rt, sid, leaves) == first
    assert stages.seal_session(rt, sid, []) == first
    session = rt.meta.get_session(sid)
    assert (session["state"], session["tree_size"]) == ("STOPPED", 4)
    assert session["history"] == history


def test_the_seal_drops_plaintext_left_by_requests_that_never_committed(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    orphans = [f"sessions/{sid}/raw/00000001-lost", f"sessions/{sid}/parts/00000003-0-lost"]
    for key in orphans:
        rt.blobs.put(key, b"plaintext of a request that died before its commit")
    stages.seal_session(rt, sid, leaves)
    left = list(rt.blobs.keys(f"sessions/{sid}/"))
    assert left and all("/enc/" in k or k.endswith("/leaves.jsonl") for k in left), left


@pytest.mark.parametrize("then", [[Trigger.ERROR], [Trigger.ERROR, Trigger.RECOVER]])
def test_a_seal_that_arrives_after_an_error_is_stale_and_commits_nothing(
    rt: Runtime, then: list[Trigger]
) -> None:
    # A chord published before a chunk failed may still finish; the session has moved on.
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    for trigger in then:
        rt.meta.apply_trigger(sid, trigger)
    history = rt.meta.get_session(sid)["history"]
    with pytest.raises(StaleSeal, match="not STOPPING"):
        stages.seal_session(rt, sid, leaves)
    session = rt.meta.get_session(sid)
    assert (session["merkle_root"], session["history"]) == (None, history)


def test_seal_refuses_a_chunk_that_was_never_hashed(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = []
    for i in range(4):
        ref = stages.encrypt_stage(rt, stages.compress_chunk(rt, sid, i, i == 3))
        if i != 2:
            leaves.append(stages.hash_chunk(rt, ref))
    with pytest.raises(IntegrityError, match="never hashed") as caught:
        stages.seal_session(rt, sid, leaves)
    assert caught.value.chunk_index == 2
    session = rt.meta.get_session(sid)
    assert (session["state"], session["merkle_root"]) == ("STOPPING", None)


def test_seal_refuses_a_leaf_hash_altered_in_the_store(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    rt.meta.chunks.update_one({"session_id": sid, "index": 1}, {"$set": {"leaf_hash": "00" * 32}})
    with pytest.raises(IntegrityError, match="recorded leaf hash") as caught:
        stages.seal_session(rt, sid, [])
    assert caught.value.chunk_index == 1
    assert rt.meta.get_session(sid)["merkle_root"] is None
    with pytest.raises(IntegrityError):
        stages.seal_session(rt, sid, leaves)


def test_seal_refuses_a_leaf_field_altered_in_the_store(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    rt.meta.chunks.update_one({"session_id": sid, "index": 3}, {"$set": {"plaintext_len": 1}})
    with pytest.raises(IntegrityError) as caught:
        stages.seal_session(rt, sid, leaves)
    assert caught.value.chunk_index == 3


def test_seal_refuses_a_chord_result_that_disagrees_with_the_chunk(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    forged = [*leaves[:3], stages.LeafRef(index=3, leaf_hash=leaves[0]["leaf_hash"])]
    with pytest.raises(IntegrityError, match="chord leaf hash") as caught:
        stages.seal_session(rt, sid, forged)
    assert caught.value.chunk_index == 3


def test_seal_refuses_a_missing_chunk_record(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = push_chunks(rt, sid)
    rt.meta.chunks.delete_one({"session_id": sid, "index": 2})
    with pytest.raises(IntegrityError, match=r"expected chunks 0\.\.3"):
        stages.seal_session(rt, sid, leaves)


def test_seal_refuses_a_final_flag_out_of_place(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    leaves = []
    for i in range(4):
        ref = stages.encrypt_stage(rt, stages.compress_chunk(rt, sid, i, i == 1))
        leaves.append(stages.hash_chunk(rt, ref))
    with pytest.raises(IntegrityError, match="final flag") as caught:
        stages.seal_session(rt, sid, leaves)
    assert caught.value.chunk_index == 1


def test_anchor_records_a_confirmed_receipt_of_the_session_root(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    merkle_root = stages.seal_session(rt, sid, push_chunks(rt, sid))
    receipt = stages.anchor_session(rt, sid)
    assert receipt["status"] == "confirmed"
    assert (receipt["root"], receipt["tree_size"]) == (merkle_root, 4)
    assert rt.meta.get_anchor(sid) == receipt
    assert rt.meta.get_session(sid)["anchor"] == receipt
    entries = list(_ledger(rt).entries())
    assert [(e.session_id, e.root, e.tree_size) for e in entries] == [(sid, merkle_root, 4)]


def test_anchor_twice_adds_no_second_ledger_entry(rt: Runtime) -> None:
    sid, _ = record(rt, DATA)
    stages.seal_session(rt, sid, push_chunks(rt, sid))
    first = stages.anchor_session(rt, sid)
    second = stages.anchor_session(rt, sid)
    assert second["reference"] == first["reference"]
    assert second["root"] == first["root"]
    ledger = _ledger(rt)
    assert ledger.verify() == 1
    assert len(list(ledger.entries())) == 1


def test_two_sessions_get_two_ledger_entries(rt: Runtime) -> None:
    for data in (DATA, compressible(100, seed=3)):
        sid, _ = record(rt, data)
        stages.seal_session(rt, sid, push_chunks(rt, sid))
        stages.anchor_session(rt, sid)
    assert _ledger(rt).verify() == 2


class _HashFinishesFirst(FileBlobStore):
    """The real blob store, where the first chain's hash finishes (and deletes the
    compressed blob) just as a duplicate compress, which saw that blob, asks its size."""

    def __init__(self, root: Path, finish: Callable[[], object]) -> None:
        super().__init__(root)
        self.finish: Callable[[], object] | None = finish

    def size(self, key: str) -> int:
        if "/zst/" in key and self.finish is not None:
            run, self.finish = self.finish, None
            run()
        return super().size(key)


def test_a_duplicate_compress_racing_the_hash_that_drops_its_output_reports_the_record(
    rt: Runtime,
) -> None:
    # Seen on S3 in CI: the seal's chord sent a chunk's chain again while the first one
    # was hashing; the copy found the compressed blob, hash deleted it, and the copy's
    # size() failed the whole session.
    sid, _ = record(rt, compressible(CHUNK + 10))
    first = stages.encrypt_stage(rt, stages.compress_chunk(rt, sid, 0, False))
    racing = _HashFinishesFirst(rt.settings.blobs_path, lambda: stages.hash_chunk(rt, first))
    rt.__dict__["blobs"] = racing
    copy = stages.compress_chunk(rt, sid, 0, False)
    assert copy["compressed_len"] == first["compressed_len"]
    assert rt.meta.get_chunk(sid, 0)["stage"] == ChunkStage.HASHED
    assert stages.encrypt_stage(rt, copy)["ciphertext_len"] == first["ciphertext_len"]
