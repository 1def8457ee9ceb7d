"""Live ingest at explicit offsets: wrong and retried offsets, requests that died midway,
and concurrent writers racing on one offset."""

from __future__ import annotations

import io
from typing import Any

import pytest

from lucid.errors import InvalidInput, OffsetMismatch
from lucid.pipeline import sessions
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.lucid.conftest import CHUNK, compressible, incompressible
from tests.lucid.pipeline.session_helpers import (
    Cuts,
    Interleaved,
    active_session,
    append_data,
    blob_keys,
    raw_chunks,
    seal_and_restore,
)


def test_append_at_a_wrong_offset_is_409_with_the_true_offset_and_appends_nothing(
    rt: Runtime,
) -> None:
    sid = active_session(rt)
    data = compressible(CHUNK + 100, seed=30)
    append_data(rt, sid, data[: CHUNK + 50], [], offset=0)
    before, keys = rt.meta.get_session(sid), blob_keys(rt, sid)
    for wrong in (0, CHUNK, CHUNK + 49, CHUNK + 51, 10 * CHUNK):
        cuts: Cuts = []
        with pytest.raises(OffsetMismatch) as caught:
            append_data(rt, sid, b"z" * (2 * CHUNK), cuts, offset=wrong)
        assert caught.value.expected == CHUNK + 50
        assert str(caught.value) == f"expected offset {CHUNK + 50}, got {wrong}"
        assert cuts == []
    assert rt.meta.get_session(sid)["tail"] == before["tail"]
    assert blob_keys(rt, sid) == keys
    assert sessions.committed_length(rt, sid) == CHUNK + 50
    append_data(rt, sid, data[CHUNK + 50 :], [], offset=CHUNK + 50)
    assert seal_and_restore(rt, sid) == data


def test_append_without_an_offset_is_invalid_input_naming_the_offset(rt: Runtime) -> None:
    sid = active_session(rt)
    append_data(rt, sid, b"abc", [])
    with pytest.raises(InvalidInput, match="has 3 bytes"):
        sessions.append(rt, sid, io.BytesIO(b"def"), lambda s, i, f: None, offset=None)
    assert sessions.committed_length(rt, sid) == 3


def test_retrying_a_request_whose_response_was_lost_appends_nothing(rt: Runtime) -> None:
    sid = active_session(rt)
    data = compressible(3 * CHUNK + 7, seed=31)
    append_data(rt, sid, data[: 2 * CHUNK + 3], [], offset=0)
    with pytest.raises(OffsetMismatch) as caught:  # the same request again
        append_data(rt, sid, data[: 2 * CHUNK + 3], [], offset=0)
    resume_at = caught.value.expected
    assert resume_at == 2 * CHUNK + 3
    append_data(rt, sid, data[resume_at:], [], offset=resume_at)
    assert seal_and_restore(rt, sid) == data


def test_a_retried_whole_recording_on_a_session_with_bytes_appends_nothing(rt: Runtime) -> None:
    sid = active_session(rt)
    append_data(rt, sid, b"x" * 10, [])
    with pytest.raises(OffsetMismatch) as caught:
        sessions.ingest_recording(rt, sid, io.BytesIO(b"y" * 10), lambda s, i, f: None)
    assert caught.value.expected == 10
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"


def test_bug1_a_chunk_published_by_a_request_that_died_is_not_counted_nor_doubled(
    rt: Runtime,
) -> None:
    # Issue 8 item 1: a request died after publishing chunk 4 as a raw blob but before the
    # record counted it; the client was told 4 chunks + 5 bytes and resumed from there.
    sid = active_session(rt)
    data = compressible(6 * CHUNK + 33, seed=32)
    told = 4 * CHUNK + 5
    append_data(rt, sid, data[:told], [], offset=0)
    rt.blobs.put(layout.raw_key(sid, 4, "dead0"), data[4 * CHUNK : 5 * CHUNK])  # published
    rt.blobs.put(layout.part_key(sid, 4, told, "dead1"), data[told : told + 100])  # uncounted
    rt.blobs.put(f"sessions/{sid}/raw/00000004", data[4 * CHUNK : 5 * CHUNK])  # the old key
    assert sessions.committed_length(rt, sid) == told
    cuts: Cuts = []
    append_data(rt, sid, data[told:], cuts, offset=told)
    assert cuts == [(4, False), (5, False)]
    assert seal_and_restore(rt, sid) == data


def test_bug2_a_chunk_committed_but_not_recorded_counts_and_the_resume_records_it(
    rt: Runtime,
) -> None:
    # Issue 8 item 2: the API process died between a chunk's commit (its tail swap) and
    # its record. The committed length counts it; the next request records and hands it on.
    sid = active_session(rt)
    data = compressible(4 * CHUNK + 9, seed=33)
    append_data(rt, sid, data[: CHUNK + 1], [], offset=0)
    seq = rt.meta.get_session(sid)["tail"]["seq"]
    key = layout.raw_key(sid, 1, "died")
    rt.blobs.put(key, data[CHUNK : 2 * CHUNK])
    tail = {"chunk": 1, "length": CHUNK, "parts": [], "raw": key, "seq": seq + 1}
    assert rt.meta.swap_tail(sid, seq, tail) is not None  # ... and then the process died
    assert len(rt.meta.list_chunks(sid)) == 1
    assert sessions.committed_length(rt, sid) == 2 * CHUNK
    cuts: Cuts = []
    with pytest.raises(OffsetMismatch):  # a client resuming from what it last heard
        append_data(rt, sid, data[CHUNK + 1 :], cuts, offset=CHUNK + 1)
    assert cuts == [(1, False)]  # recorded and handed on by the next request, even a 409
    assert rt.meta.get_chunk(sid, 1)["raw_key"] == key
    append_data(rt, sid, data[2 * CHUNK :], cuts, offset=2 * CHUNK)
    assert cuts == [(1, False), (2, False), (3, False)]  # chunk 1 handed on once
    assert seal_and_restore(rt, sid) == data


@pytest.mark.parametrize(
    ("first", "second"),
    [(100, 200), (3 * CHUNK, 10), (10, 3 * CHUNK), (2 * CHUNK, 2 * CHUNK + 1)],
    ids=["tail-tail", "chunks-tail", "tail-chunks", "chunks-chunks"],
)
def test_two_writers_at_the_same_offset_exactly_one_wins(
    rt: Runtime, first: int, second: int
) -> None:
    # The loser read the session before the winner committed anything, so it saw the same
    # committed length; its commit must fail whatever either request's size.
    sid = active_session(rt)
    head = compressible(CHUNK // 2, seed=34)
    append_data(rt, sid, head, [], offset=0)
    winner, loser = incompressible(second, seed=35), incompressible(first, seed=36)
    won: list[dict[str, Any]] = []

    def other_request() -> None:
        won.append(append_data(rt, sid, winner, [], offset=len(head)))

    with pytest.raises(OffsetMismatch) as caught:
        sessions.append(
            rt, sid, Interleaved(loser, other_request), lambda s, i, f: None, offset=len(head)
        )
    assert len(won) == 1
    assert caught.value.expected == len(head) + second
    assert sessions.committed_length(rt, sid) == len(head) + second
    assert seal_and_restore(rt, sid) == head + winner
    assert not [k for k in blob_keys(rt, sid) if "/parts/" in k or "/raw/" in k]


def test_threads_racing_on_one_offset_commit_exactly_one_body(rt: Runtime) -> None:
    import threading

    sid = active_session(rt)
    bodies = [incompressible(CHUNK + 1000 * i, seed=40 + i) for i in range(4)]
    results: list[object] = [None] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = append_data(rt, sid, bodies[i], [], offset=0)
        except OffsetMismatch as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert seal_and_restore(rt, sid) == bodies[winners[0]]


def test_a_stream_that_fails_midway_keeps_what_arrived(rt: Runtime) -> None:
    sid = active_session(rt)
    data = compressible(3 * CHUNK, seed=37)

    class Dropped(io.BytesIO):
        """A socket: at most 4 KiB per read, then reset after CHUNK + 10 bytes."""

        def readinto(self, buffer: Any) -> int:
            if self.tell() >= CHUNK + 10:
                raise ConnectionResetError("client went away")
            return super().readinto(memoryview(buffer)[:4096])

    with pytest.raises(ConnectionResetError):
        sessions.append(rt, sid, Dropped(data), lambda s, i, f: None, offset=0)
    kept = sessions.committed_length(rt, sid)
    assert kept == CHUNK + 4096 * ((CHUNK + 10) // 4096 + 1) - CHUNK
    append_data(rt, sid, data[kept:], [], offset=kept)
    assert seal_and_restore(rt, sid) == data


def test_appends_use_no_local_staging_and_leave_only_committed_blobs(rt: Runtime) -> None:
    sid = active_session(rt)
    data = compressible(3 * CHUNK + 11, seed=43)
    for a, b in ((0, 5), (5, CHUNK), (CHUNK, 2 * CHUNK + 1), (2 * CHUNK + 1, len(data))):
        append_data(rt, sid, data[a:b], [], offset=a)
    assert not (rt.settings.data_dir / "staging").exists()
    parts = [k for k in blob_keys(rt, sid) if "/parts/" in k]
    tail = rt.meta.get_session(sid)["tail"]
    assert sorted(parts) == sorted(p["key"] for p in tail["parts"])
    assert sum(p["length"] for p in tail["parts"]) == tail["length"] == 11
    sessions.stop(rt, sid)
    assert not [k for k in blob_keys(rt, sid) if "/parts/" in k]
    raws = sorted(k for k in blob_keys(rt, sid) if "/raw/" in k)
    assert raws == sorted(c["raw_key"] for c in rt.meta.list_chunks(sid))
    assert seal_and_restore(rt, sid) == data


def test_small_pieces_across_chunks_keep_every_byte_and_each_append_returns_its_offset(
    rt: Runtime,
) -> None:
    sid = active_session(rt)
    piece = CHUNK // 5 + 3  # pieces straddle every chunk boundary, several parts per chunk
    data = incompressible(3 * CHUNK + 11)
    cuts: Cuts = []
    for offset in range(0, len(data), piece):
        doc = append_data(rt, sid, data[offset : offset + piece], cuts, offset=offset)
        assert doc["offset"] == min(len(data), offset + piece)
        assert sessions.committed_length(rt, sid) == doc["offset"]
    assert cuts == [(0, False), (1, False), (2, False)]  # the 11-byte tail waits for the stop
    sessions.stop(rt, sid)
    assert b"".join(raw_chunks(rt, sid)) == data


def test_live_appends_commit_on_the_tail_alone(rt: Runtime) -> None:
    # Small pieces, as a live recorder sends them: each append after the first one reads
    # no chunk record (the tail says which chunk is being filled), and the bytes add up.
    sid = active_session(rt)
    data = compressible(3 * CHUNK + 11, seed=41)
    piece = CHUNK // 3 + 1
    cuts: Cuts = []
    at = 0
    while at < len(data):
        doc = rt.meta.get_session(sid)
        append_data(rt, sid, data[at : at + piece], cuts, offset=at, doc=doc)
        at = min(at + piece, len(data))
    assert cuts == [(0, False), (1, False), (2, False)]
    assert seal_and_restore(rt, sid) == data
