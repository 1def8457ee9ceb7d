"""Session lifecycle and live ingest on a real metadata server and file blob store."""

from __future__ import annotations

import io
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from lucid.crypto.keys import SessionKeyEnvelope, load_recipient_private, unwrap_session_key
from lucid.errors import Conflict, InvalidInput, OffsetMismatch, TooLarge
from lucid.integrity.restore import restore
from lucid.lifecycle.states import Trigger
from lucid.pipeline import sessions, stages
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.lucid.conftest import CHUNK, compressible, incompressible, push_chunks, record

Cuts = list[tuple[int, bool]]


def _active(rt: Runtime) -> str:
    sid: str = sessions.create_session(rt, {"user": "u1"})["session_id"]
    sessions.start(rt, sid)
    return sid


def _append(
    rt: Runtime, sid: str, data: bytes, cuts: Cuts, offset: int | None = None, **kw: Any
) -> dict[str, Any]:
    """Append at `offset`, by default where the client knows it is (the committed length)."""
    at = sessions.committed_length(rt, sid) if offset is None else offset
    return sessions.append(
        rt, sid, io.BytesIO(data), lambda s, i, f: cuts.append((i, f)), offset=at, **kw
    )


def _raw_chunks(rt: Runtime, sid: str) -> list[bytes]:
    """The raw chunks, read through the keys their records name, in index order."""
    chunks = rt.meta.list_chunks(sid)
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    return [rt.blobs.get(c["raw_key"]) for c in chunks]


def test_create_session_fixes_parameters_and_starts_empty(rt: Runtime) -> None:
    doc = sessions.create_session(rt, {"user": "u1"})
    assert doc["state"] == "CREATED"
    assert len(doc["session_id"]) == 32
    assert doc["metadata"] == {"user": "u1"}
    assert (doc["chunk_size"], doc["compression"], doc["encryption"]) == (
        CHUNK,
        "zstd",
        "AES-256-GCM",
    )
    assert (doc["bytes_received"], doc["chunks_emitted"], doc["chunk_count"]) == (0, 0, None)
    assert rt.meta.get_session(doc["session_id"])["state"] == "CREATED"


def test_start_moves_created_through_starting_to_active(rt: Runtime) -> None:
    sid = sessions.create_session(rt, {})["session_id"]
    doc = sessions.start(rt, sid)
    assert doc["state"] == "ACTIVE"
    assert [(h["from_state"], h["to_state"]) for h in doc["history"]] == [
        ("CREATED", "STARTING"),
        ("STARTING", "ACTIVE"),
    ]


def test_session_doc_holds_only_public_and_wrapped_key(rt: Runtime) -> None:
    doc = sessions.create_session(rt, {})
    sid = doc["session_id"]
    stored = rt.meta.get_session(sid)
    assert set(stored["key"]) == {"session_public", "wrapped_private"}
    private = unwrap_session_key(
        SessionKeyEnvelope.from_dict(stored["key"]),
        load_recipient_private(rt.settings.keys_path),
        sid,
    )
    secret = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert secret.hex() not in repr(stored)
    assert secret not in repr(stored).encode()


def test_uneven_appends_cut_only_full_chunks_until_stop_cuts_the_final(rt: Runtime) -> None:
    sid = _active(rt)
    pieces = [1, 1000, 3 * CHUNK + 5, CHUNK - 1006, 7]
    data = compressible(sum(pieces))
    cuts: Cuts = []
    expected_cuts = [[], [], [(0, False), (1, False), (2, False)], [], [(3, False)]]
    offset = 0
    for size, newly_cut in zip(pieces, expected_cuts, strict=True):
        before = len(cuts)
        doc = _append(rt, sid, data[offset : offset + size], cuts)
        offset += size
        assert cuts[before:] == newly_cut
        assert doc["bytes_received"] == offset
        assert rt.meta.get_session(sid)["bytes_received"] == offset
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"

    stopped = sessions.stop(rt, sid)
    assert stopped["state"] == "STOPPING"
    assert stopped["chunk_count"] == 5
    assert stopped["bytes_received"] == len(data)

    raw = _raw_chunks(rt, sid)
    assert [len(c) for c in raw] == [CHUNK, CHUNK, CHUNK, CHUNK, 7]
    assert b"".join(raw) == data
    docs = rt.meta.list_chunks(sid)
    assert [(d["final"], d["plaintext_len"], d["stage"]) for d in docs] == [
        (False, CHUNK, 0),
        (False, CHUNK, 0),
        (False, CHUNK, 0),
        (False, CHUNK, 0),
        (True, 7, 0),
    ]


def test_stop_records_exact_bytes_received_with_a_partial_final_chunk(rt: Runtime) -> None:
    # Regression: the final chunk was once counted as a full chunk.
    data = compressible(2 * CHUNK + 100)
    sid, cuts = record(rt, data)
    doc = rt.meta.get_session(sid)
    assert doc["bytes_received"] == 2 * CHUNK + 100
    assert doc["chunk_count"] == 3
    assert doc["chunks_emitted"] == 3
    assert cuts == [(0, False), (1, False), (2, True)]  # stop cuts and hands on the final one
    assert [c["final"] for c in rt.meta.list_chunks(sid)] == [False, False, True]
    assert rt.meta.get_chunk(sid, 2)["plaintext_len"] == 100


def test_zero_byte_recording_is_one_empty_final_chunk(rt: Runtime) -> None:
    sid, cuts = record(rt, b"")
    doc = rt.meta.get_session(sid)
    assert cuts == [(0, True)]
    assert (doc["chunk_count"], doc["bytes_received"]) == (1, 0)
    assert _raw_chunks(rt, sid) == [b""]
    assert [(c["index"], c["final"], c["plaintext_len"]) for c in rt.meta.list_chunks(sid)] == [
        (0, True, 0)
    ]


def test_exact_multiple_of_chunk_size_ends_with_a_full_final_chunk(rt: Runtime) -> None:
    data = compressible(3 * CHUNK)
    sid, cuts = record(rt, data)
    assert cuts == [(0, False), (1, False), (2, True)]
    assert [c["final"] for c in rt.meta.list_chunks(sid)] == [False, False, True]
    assert rt.meta.get_session(sid)["chunk_count"] == 3
    assert rt.meta.get_session(sid)["bytes_received"] == 3 * CHUNK
    assert [len(c) for c in _raw_chunks(rt, sid)] == [CHUNK] * 3


def test_appending_exactly_one_chunk_per_call_cuts_it_on_the_next_call(rt: Runtime) -> None:
    sid = _active(rt)
    data = compressible(2 * CHUNK, seed=5)
    cuts: Cuts = []
    _append(rt, sid, data[:CHUNK], cuts)
    assert cuts == []
    _append(rt, sid, data[CHUNK:], cuts)
    assert cuts == [(0, False)]
    sessions.stop(rt, sid)
    assert cuts == [(0, False)]  # without a callback, stop's cut is left to the seal's chord
    assert b"".join(_raw_chunks(rt, sid)) == data
    assert rt.meta.get_chunk(sid, 1)["final"] is True


def _created(rt: Runtime) -> str:
    sid: str = sessions.create_session(rt, {})["session_id"]
    return sid


def _paused(rt: Runtime) -> str:
    sid = _active(rt)
    _append(rt, sid, compressible(CHUNK + 10), [])
    sessions.pause(rt, sid)
    return sid


def _stopped(rt: Runtime) -> str:
    sid = _active(rt)
    _append(rt, sid, compressible(CHUNK + 10), [])
    sessions.stop(rt, sid)
    return sid


@pytest.mark.parametrize("setup", [_created, _paused, _stopped], ids=["created", "paused", "stop"])
def test_append_outside_active_is_a_conflict_and_changes_nothing(rt: Runtime, setup) -> None:
    sid = setup(rt)
    before = rt.meta.get_session(sid)
    chunks_before = rt.meta.list_chunks(sid)
    cuts: Cuts = []
    with pytest.raises(Conflict, match=before["state"]):
        _append(rt, sid, compressible(3 * CHUNK), cuts)
    after = rt.meta.get_session(sid)
    assert cuts == []
    assert after["bytes_received"] == before["bytes_received"]
    assert after["chunks_emitted"] == before["chunks_emitted"]
    assert after["state"] == before["state"]
    assert rt.meta.list_chunks(sid) == chunks_before


def test_pause_then_resume_continues_the_same_chunk(rt: Runtime) -> None:
    sid = _active(rt)
    data = compressible(CHUNK + 300, seed=9)
    cuts: Cuts = []
    _append(rt, sid, data[:200], cuts)
    assert sessions.pause(rt, sid)["state"] == "PAUSED"
    assert sessions.resume(rt, sid)["state"] == "ACTIVE"
    _append(rt, sid, data[200:], cuts)
    assert cuts == [(0, False)]
    sessions.stop(rt, sid)
    assert b"".join(_raw_chunks(rt, sid)) == data


def test_stop_from_paused_cuts_the_final_chunk(rt: Runtime) -> None:
    sid = _paused(rt)
    doc = sessions.stop(rt, sid)
    assert (doc["state"], doc["chunk_count"], doc["bytes_received"]) == (
        "STOPPING",
        2,
        CHUNK + 10,
    )
    assert rt.meta.get_chunk(sid, 1)["plaintext_len"] == 10


def test_stop_is_idempotent(rt: Runtime) -> None:
    sid, _ = record(rt, compressible(CHUNK + 1))
    first = rt.meta.get_session(sid)
    chunks = rt.meta.list_chunks(sid)
    late: Cuts = []
    again = sessions.stop(rt, sid, lambda s, i, f: late.append((i, f)))
    assert late == []  # the final chunk was handed on once, by the first stop
    assert again["chunk_count"] == first["chunk_count"] == 2
    assert again["bytes_received"] == first["bytes_received"]
    assert again["history"] == first["history"]
    assert rt.meta.list_chunks(sid) == chunks


def test_stop_of_a_created_session_is_a_conflict(rt: Runtime) -> None:
    sid = _created(rt)
    with pytest.raises(Conflict):
        sessions.stop(rt, sid)
    assert rt.meta.get_session(sid)["chunk_count"] is None
    assert rt.meta.list_chunks(sid) == []


def test_exceeding_the_limit_raises_too_large_and_keeps_only_whole_chunks_before_it(
    rt: Runtime,
) -> None:
    """Bytes are read straight into the chunk buffers: a chunk that filled before the limit
    was crossed (and had more bytes after it) is committed; nothing past it is kept."""
    sid = _active(rt)
    cuts: Cuts = []
    with pytest.raises(TooLarge, match=f"{CHUNK} bytes are kept"):
        _append(rt, sid, compressible(3 * CHUNK), cuts, limit=2 * CHUNK)
    assert cuts == [(0, False)]
    assert sessions.committed_length(rt, sid) == CHUNK
    assert [c["index"] for c in rt.meta.list_chunks(sid)] == [0]


def test_exceeding_the_limit_keeps_what_was_committed_before(rt: Runtime) -> None:
    sid = _active(rt)
    data = compressible(CHUNK, seed=4)
    cuts: Cuts = []
    _append(rt, sid, data, cuts, limit=2 * CHUNK)
    with pytest.raises(TooLarge):
        _append(rt, sid, compressible(CHUNK + 1), cuts, limit=2 * CHUNK)
    assert rt.meta.get_session(sid)["bytes_received"] == CHUNK
    doc = sessions.stop(rt, sid)
    # More bytes followed the full tail, so it was cut as chunk 0 before the limit was
    # crossed; the refused request left nothing after it: the final chunk is empty.
    assert (doc["chunk_count"], doc["bytes_received"]) == (2, CHUNK)
    assert _raw_chunks(rt, sid) == [data, b""]


def test_a_recording_at_exactly_the_limit_is_accepted(rt: Runtime) -> None:
    sid = _active(rt)
    doc = _append(rt, sid, compressible(2 * CHUNK), [], limit=2 * CHUNK)
    assert doc["bytes_received"] == 2 * CHUNK


def test_too_large_midway_keeps_the_cut_chunks_and_later_appends_continue_from_them(
    rt: Runtime,
) -> None:
    # The stream is read in 1 MiB blocks: the first block is taken, the second is refused.
    sid = _active(rt)
    mib = 1024 * 1024
    data = compressible(mib + 100, seed=6)
    cuts: Cuts = []
    with pytest.raises(TooLarge) as caught:
        _append(rt, sid, data, cuts, limit=mib + 10)
    kept = rt.meta.get_session(sid)["bytes_received"]
    assert kept == len(cuts) * CHUNK
    assert cuts == [(i, False) for i in range(mib // CHUNK - 1)]
    assert f"{kept} bytes are kept" in str(caught.value)

    tail = compressible(CHUNK + 3, seed=8)
    _append(rt, sid, tail, cuts)
    doc = sessions.stop(rt, sid)
    assert doc["bytes_received"] == kept + len(tail)
    assert b"".join(_raw_chunks(rt, sid)) == data[:kept] + tail


def test_a_failed_commit_stops_later_chunks_and_a_resumed_append_leaves_no_gap(
    rt: Runtime,
) -> None:
    sid = _active(rt)
    data = compressible(5 * CHUNK + 10, seed=11)
    cuts: Cuts = []

    def broker_down_at_chunk_1(session_id: str, index: int, final: bool) -> None:
        if index == 1:
            raise ConnectionError("broker down")
        cuts.append((index, final))

    with pytest.raises(ConnectionError):
        sessions.append(rt, sid, io.BytesIO(data), broker_down_at_chunk_1, offset=0)
    kept = rt.meta.get_session(sid)["bytes_received"]
    assert cuts == [(0, False)]
    assert kept == 2 * CHUNK  # chunk 1 was stored and recorded before its hand-off failed
    assert sessions.committed_length(rt, sid) == kept
    assert len(rt.meta.list_chunks(sid)) == 2

    _append(rt, sid, data[kept:], cuts)
    sessions.stop(rt, sid)
    assert b"".join(_raw_chunks(rt, sid)) == data


def _seal_and_restore(rt: Runtime, sid: str) -> bytes:
    """Stop (if not yet), push every chunk through the stages, seal, anchor and restore."""
    if rt.meta.get_session(sid)["chunk_count"] is None:
        sessions.stop(rt, sid)
    stages.seal_session(rt, sid, push_chunks(rt, sid))
    stages.anchor_session(rt, sid)
    return b"".join(restore(rt, sid))


def _blob_keys(rt: Runtime, sid: str) -> list[str]:
    return list(rt.blobs.keys(f"sessions/{sid}/"))


class _Interleaved(io.BytesIO):
    """A request body that lets another request run before its first bytes arrive."""

    def __init__(self, data: bytes, meanwhile: Any) -> None:
        super().__init__(data)
        self.meanwhile = meanwhile

    def _first(self) -> None:
        if self.meanwhile is not None:
            run, self.meanwhile = self.meanwhile, None
            run()

    def read(self, size: int | None = -1) -> bytes:
        self._first()
        return super().read(size)

    def readinto(self, buffer: Any) -> int:
        self._first()
        return super().readinto(buffer)


def test_append_at_a_wrong_offset_is_409_with_the_true_offset_and_appends_nothing(
    rt: Runtime,
) -> None:
    sid = _active(rt)
    data = compressible(CHUNK + 100, seed=30)
    _append(rt, sid, data[: CHUNK + 50], [], offset=0)
    before, keys = rt.meta.get_session(sid), _blob_keys(rt, sid)
    for wrong in (0, CHUNK, CHUNK + 49, CHUNK + 51, 10 * CHUNK):
        cuts: Cuts = []
        with pytest.raises(OffsetMismatch) as caught:
            _append(rt, sid, b"z" * (2 * CHUNK), cuts, offset=wrong)
        assert caught.value.expected == CHUNK + 50
        assert str(caught.value) == f"expected offset {CHUNK + 50}, got {wrong}"
        assert cuts == []
    assert rt.meta.get_session(sid)["tail"] == before["tail"]
    assert _blob_keys(rt, sid) == keys
    assert sessions.committed_length(rt, sid) == CHUNK + 50
    _append(rt, sid, data[CHUNK + 50 :], [], offset=CHUNK + 50)
    assert _seal_and_restore(rt, sid) == data


def test_append_without_an_offset_is_invalid_input_naming_the_offset(rt: Runtime) -> None:
    sid = _active(rt)
    _append(rt, sid, b"abc", [])
    with pytest.raises(InvalidInput, match="has 3 bytes"):
        sessions.append(rt, sid, io.BytesIO(b"def"), lambda s, i, f: None, offset=None)
    assert sessions.committed_length(rt, sid) == 3


def test_retrying_a_request_whose_response_was_lost_appends_nothing(rt: Runtime) -> None:
    sid = _active(rt)
    data = compressible(3 * CHUNK + 7, seed=31)
    _append(rt, sid, data[: 2 * CHUNK + 3], [], offset=0)
    with pytest.raises(OffsetMismatch) as caught:  # the same request again
        _append(rt, sid, data[: 2 * CHUNK + 3], [], offset=0)
    resume_at = caught.value.expected
    assert resume_at == 2 * CHUNK + 3
    _append(rt, sid, data[resume_at:], [], offset=resume_at)
    assert _seal_and_restore(rt, sid) == data


def test_bug1_a_chunk_published_by_a_request_that_died_is_not_counted_nor_doubled(
    rt: Runtime,
) -> None:
    # Issue 8 item 1: a request died after publishing chunk 4 as a raw blob but before the
    # record counted it; the client was told 4 chunks + 5 bytes and resumed from there.
    sid = _active(rt)
    data = compressible(6 * CHUNK + 33, seed=32)
    told = 4 * CHUNK + 5
    _append(rt, sid, data[:told], [], offset=0)
    rt.blobs.put(layout.raw_key(sid, 4, "dead0"), data[4 * CHUNK : 5 * CHUNK])  # published
    rt.blobs.put(layout.part_key(sid, 4, told, "dead1"), data[told : told + 100])  # uncounted
    rt.blobs.put(f"sessions/{sid}/raw/00000004", data[4 * CHUNK : 5 * CHUNK])  # the old key
    assert sessions.committed_length(rt, sid) == told
    cuts: Cuts = []
    _append(rt, sid, data[told:], cuts, offset=told)
    assert cuts == [(4, False), (5, False)]
    assert _seal_and_restore(rt, sid) == data


def test_bug2_a_chunk_committed_but_not_recorded_counts_and_the_resume_records_it(
    rt: Runtime,
) -> None:
    # Issue 8 item 2: the API process died between a chunk's commit (its tail swap) and
    # its record. The committed length counts it; the next request records and hands it on.
    sid = _active(rt)
    data = compressible(4 * CHUNK + 9, seed=33)
    _append(rt, sid, data[: CHUNK + 1], [], offset=0)
    seq = rt.meta.get_session(sid)["tail"]["seq"]
    key = layout.raw_key(sid, 1, "died")
    rt.blobs.put(key, data[CHUNK : 2 * CHUNK])
    tail = {"chunk": 1, "length": CHUNK, "parts": [], "raw": key, "seq": seq + 1}
    assert rt.meta.swap_tail(sid, seq, tail) is not None  # ... and then the process died
    assert len(rt.meta.list_chunks(sid)) == 1
    assert sessions.committed_length(rt, sid) == 2 * CHUNK
    cuts: Cuts = []
    with pytest.raises(OffsetMismatch):  # a client resuming from what it last heard
        _append(rt, sid, data[CHUNK + 1 :], cuts, offset=CHUNK + 1)
    assert cuts == [(1, False)]  # recorded and handed on by the next request, even a 409
    assert rt.meta.get_chunk(sid, 1)["raw_key"] == key
    _append(rt, sid, data[2 * CHUNK :], cuts, offset=2 * CHUNK)
    assert cuts == [(1, False), (2, False), (3, False)]  # chunk 1 handed on once
    assert _seal_and_restore(rt, sid) == data


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
    sid = _active(rt)
    head = compressible(CHUNK // 2, seed=34)
    _append(rt, sid, head, [], offset=0)
    winner, loser = incompressible(second, seed=35), incompressible(first, seed=36)
    won: list[dict[str, Any]] = []

    def other_request() -> None:
        won.append(_append(rt, sid, winner, [], offset=len(head)))

    with pytest.raises(OffsetMismatch) as caught:
        sessions.append(
            rt, sid, _Interleaved(loser, other_request), lambda s, i, f: None, offset=len(head)
        )
    assert len(won) == 1
    assert caught.value.expected == len(head) + second
    assert sessions.committed_length(rt, sid) == len(head) + second
    assert _seal_and_restore(rt, sid) == head + winner
    assert not [k for k in _blob_keys(rt, sid) if "/parts/" in k or "/raw/" in k]


def test_threads_racing_on_one_offset_commit_exactly_one_body(rt: Runtime) -> None:
    import threading

    sid = _active(rt)
    bodies = [incompressible(CHUNK + 1000 * i, seed=40 + i) for i in range(4)]
    results: list[object] = [None] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = _append(rt, sid, bodies[i], [], offset=0)
        except OffsetMismatch as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert _seal_and_restore(rt, sid) == bodies[winners[0]]


def test_a_stream_that_fails_midway_keeps_what_arrived(rt: Runtime) -> None:
    sid = _active(rt)
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
    _append(rt, sid, data[kept:], [], offset=kept)
    assert _seal_and_restore(rt, sid) == data


def test_stop_retried_after_a_crash_between_the_final_insert_and_the_chunk_count(
    rt: Runtime,
) -> None:
    sid = _active(rt)
    data = compressible(2 * CHUNK + 70, seed=38)
    _append(rt, sid, data, [])

    def crash_on_final(session_id: str, index: int, final: bool) -> None:
        raise ConnectionError("broker down while handing on the final chunk")

    with pytest.raises(ConnectionError):
        sessions.stop(rt, sid, crash_on_final)
    doc = rt.meta.get_session(sid)
    assert (doc["state"], doc["chunk_count"]) == ("STOPPING", None)
    assert rt.meta.get_chunk(sid, 2)["final"] is True
    with pytest.raises(Conflict, match="STOPPING"):
        _append(rt, sid, b"late", [], offset=len(data))
    late: Cuts = []
    doc = sessions.stop(rt, sid, lambda s, i, f: late.append((i, f)))
    assert late == []  # the final chunk's record exists: the seal's chord takes it
    assert (doc["state"], doc["chunk_count"], doc["bytes_received"]) == (
        "STOPPING",
        3,
        len(data),
    )
    assert sessions.committed_length(rt, sid) == len(data)
    assert not [k for k in _blob_keys(rt, sid) if "/parts/" in k]
    assert _seal_and_restore(rt, sid) == data


def test_a_session_recovered_after_a_stop_that_crashed_past_its_final_cut_takes_no_bytes(
    rt: Runtime,
) -> None:
    # Appends derive the state from the tail alone when they can: not here, where the tail
    # still lists parts that are now inside the final chunk's record.
    sid = _active(rt)
    data = compressible(CHUNK + 70, seed=39)
    _append(rt, sid, data, [])

    def crash_on_final(session_id: str, index: int, final: bool) -> None:
        raise ConnectionError("broker down while handing on the final chunk")

    with pytest.raises(ConnectionError):
        sessions.stop(rt, sid, crash_on_final)
    assert rt.meta.get_session(sid)["tail"]["parts"]  # the stop died before clearing it
    rt.meta.apply_trigger(sid, Trigger.ERROR, reason="operator")
    sessions.recover(rt, sid)
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"
    with pytest.raises(Conflict, match="already has its final chunk"):
        _append(rt, sid, b"late", [], offset=len(data))
    assert sessions.committed_length(rt, sid) == len(data)


def test_live_appends_commit_on_the_tail_alone(rt: Runtime) -> None:
    # Small pieces, as a live recorder sends them: each append after the first one reads
    # no chunk record (the tail says which chunk is being filled), and the bytes add up.
    sid = _active(rt)
    data = compressible(3 * CHUNK + 11, seed=41)
    piece = CHUNK // 3 + 1
    cuts: Cuts = []
    at = 0
    while at < len(data):
        doc = rt.meta.get_session(sid)
        _append(rt, sid, data[at : at + piece], cuts, offset=at, doc=doc)
        at = min(at + piece, len(data))
    assert cuts == [(0, False), (1, False), (2, False)]
    assert _seal_and_restore(rt, sid) == data


def test_finish_stop_completes_a_session_left_in_stopping_before_the_final_cut(
    rt: Runtime,
) -> None:
    sid = _active(rt)
    data = compressible(CHUNK + 70, seed=39)
    _append(rt, sid, data, [])
    rt.meta.apply_trigger(sid, Trigger.STOP)  # ... and the process died
    cuts: Cuts = []
    doc = sessions.finish_stop(rt, sid, lambda s, i, f: cuts.append((i, f)))
    assert cuts == [(1, True)]
    assert (doc["chunk_count"], doc["bytes_received"]) == (2, len(data))
    assert sessions.finish_stop(rt, sid, lambda s, i, f: cuts.append((i, f)))["chunk_count"] == 2
    assert cuts == [(1, True)]
    assert _seal_and_restore(rt, sid) == data


def test_bug6_append_after_recovering_a_sealed_session_is_a_conflict_not_a_crash(
    rt: Runtime,
) -> None:
    # Issue 8 item 6: the session failed after its seal; /recover, then POST /data was a 500.
    data = compressible(CHUNK + 5, seed=41)
    sid, _ = record(rt, data)
    rt.meta.apply_trigger(sid, Trigger.ERROR, reason="a chunk failed after the seal")
    sessions.recover(rt, sid)
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"
    for offset in (len(data), 0):
        with pytest.raises(Conflict, match="already has its final chunk") as caught:
            _append(rt, sid, b"more", [], offset=offset)
        assert not isinstance(caught.value, OffsetMismatch)
    assert sessions.committed_length(rt, sid) == len(data)
    assert sessions.stop(rt, sid)["state"] == "STOPPING"
    assert _seal_and_restore(rt, sid) == data


def test_recover_after_a_failure_during_stop_refuses_appends_and_stop_finishes(
    rt: Runtime,
) -> None:
    sid = _active(rt)
    data = compressible(CHUNK + 5, seed=42)
    _append(rt, sid, data, [])

    def crash(session_id: str, index: int, final: bool) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        sessions.stop(rt, sid, crash)
    rt.meta.apply_trigger(sid, Trigger.ERROR, reason="stop failed")
    sessions.recover(rt, sid)
    with pytest.raises(Conflict, match="already has its final chunk"):
        _append(rt, sid, b"more", [])
    doc = sessions.stop(rt, sid)
    assert (doc["state"], doc["chunk_count"]) == ("STOPPING", 2)
    assert _seal_and_restore(rt, sid) == data


def test_a_retried_whole_recording_on_a_session_with_bytes_appends_nothing(rt: Runtime) -> None:
    sid = _active(rt)
    _append(rt, sid, b"x" * 10, [])
    with pytest.raises(OffsetMismatch) as caught:
        sessions.ingest_recording(rt, sid, io.BytesIO(b"y" * 10), lambda s, i, f: None)
    assert caught.value.expected == 10
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"


def test_appends_use_no_local_staging_and_leave_only_committed_blobs(rt: Runtime) -> None:
    sid = _active(rt)
    data = compressible(3 * CHUNK + 11, seed=43)
    for a, b in ((0, 5), (5, CHUNK), (CHUNK, 2 * CHUNK + 1), (2 * CHUNK + 1, len(data))):
        _append(rt, sid, data[a:b], [], offset=a)
    assert not (rt.settings.data_dir / "staging").exists()
    parts = [k for k in _blob_keys(rt, sid) if "/parts/" in k]
    tail = rt.meta.get_session(sid)["tail"]
    assert sorted(parts) == sorted(p["key"] for p in tail["parts"])
    assert sum(p["length"] for p in tail["parts"]) == tail["length"] == 11
    sessions.stop(rt, sid)
    assert not [k for k in _blob_keys(rt, sid) if "/parts/" in k]
    raws = sorted(k for k in _blob_keys(rt, sid) if "/raw/" in k)
    assert raws == sorted(c["raw_key"] for c in rt.meta.list_chunks(sid))
    assert _seal_and_restore(rt, sid) == data


@pytest.mark.parametrize("size", [100, 3 * CHUNK], ids=["tail", "chunks"])
def test_a_stop_while_an_append_is_being_read_refuses_the_append(rt: Runtime, size: int) -> None:
    sid = _active(rt)
    head = compressible(CHUNK + 1, seed=44)
    _append(rt, sid, head, [])
    stopped: list[dict[str, Any]] = []
    body = _Interleaved(incompressible(size), lambda: stopped.append(sessions.stop(rt, sid)))
    with pytest.raises(Conflict, match="became STOPPING") as caught:
        sessions.append(rt, sid, body, lambda s, i, f: None, offset=len(head))
    assert not isinstance(caught.value, OffsetMismatch)
    assert stopped[0]["chunk_count"] == 2
    assert sessions.committed_length(rt, sid) == len(head)
    assert _seal_and_restore(rt, sid) == head
    assert not [k for k in _blob_keys(rt, sid) if "/parts/" in k or "/raw/" in k]


def test_stop_records_a_chunk_an_append_committed_but_did_not_record(rt: Runtime) -> None:
    sid = _active(rt)
    data = compressible(2 * CHUNK + 40, seed=45)
    _append(rt, sid, data[: CHUNK + 40], [])
    seq = rt.meta.get_session(sid)["tail"]["seq"]
    key = layout.raw_key(sid, 1, "late")
    rt.blobs.put(key, data[CHUNK : 2 * CHUNK])
    tail = {"chunk": 1, "length": CHUNK, "parts": [], "raw": key, "seq": seq + 1}
    assert rt.meta.swap_tail(sid, seq, tail) is not None  # the append's insert is still to come
    cuts: Cuts = []
    doc = sessions.stop(rt, sid, lambda s, i, f: cuts.append((i, f)))
    assert cuts == [(1, False), (2, True)]
    assert (doc["chunk_count"], doc["bytes_received"]) == (3, 2 * CHUNK)
    assert rt.meta.get_chunk(sid, 2)["plaintext_len"] == 0
    assert _seal_and_restore(rt, sid) == data[: 2 * CHUNK]


def test_small_pieces_across_chunks_keep_every_byte_and_each_append_returns_its_offset(
    rt: Runtime,
) -> None:
    sid = _active(rt)
    piece = CHUNK // 5 + 3  # pieces straddle every chunk boundary, several parts per chunk
    data = incompressible(3 * CHUNK + 11)
    cuts: Cuts = []
    for offset in range(0, len(data), piece):
        doc = _append(rt, sid, data[offset : offset + piece], cuts, offset=offset)
        assert doc["offset"] == min(len(data), offset + piece)
        assert sessions.committed_length(rt, sid) == doc["offset"]
    assert cuts == [(0, False), (1, False), (2, False)]  # the 11-byte tail waits for the stop
    sessions.stop(rt, sid)
    assert b"".join(_raw_chunks(rt, sid)) == data
