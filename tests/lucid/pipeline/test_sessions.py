"""Session lifecycle and live ingest on a real metadata server and file blob store: creating,
starting, cutting chunks, state guards and the size limit."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives import serialization

from lucid.crypto.keys import SessionKeyEnvelope, load_recipient_private, unwrap_session_key
from lucid.errors import Conflict, TooLarge
from lucid.pipeline import sessions
from lucid.runtime import Runtime
from tests.lucid.conftest import CHUNK, compressible, record
from tests.lucid.pipeline.session_helpers import (
    Cuts,
    active_session,
    append_data,
    raw_chunks,
)


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
    sid = active_session(rt)
    pieces = [1, 1000, 3 * CHUNK + 5, CHUNK - 1006, 7]
    data = compressible(sum(pieces))
    cuts: Cuts = []
    expected_cuts = [[], [], [(0, False), (1, False), (2, False)], [], [(3, False)]]
    offset = 0
    for size, newly_cut in zip(pieces, expected_cuts, strict=True):
        before = len(cuts)
        doc = append_data(rt, sid, data[offset : offset + size], cuts)
        offset += size
        assert cuts[before:] == newly_cut
        assert doc["bytes_received"] == offset
        assert rt.meta.get_session(sid)["bytes_received"] == offset
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"

    stopped = sessions.stop(rt, sid)
    assert stopped["state"] == "STOPPING"
    assert stopped["chunk_count"] == 5
    assert stopped["bytes_received"] == len(data)

    raw = raw_chunks(rt, sid)
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
    assert raw_chunks(rt, sid) == [b""]
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
    assert [len(c) for c in raw_chunks(rt, sid)] == [CHUNK] * 3


def test_appending_exactly_one_chunk_per_call_cuts_it_on_the_next_call(rt: Runtime) -> None:
    sid = active_session(rt)
    data = compressible(2 * CHUNK, seed=5)
    cuts: Cuts = []
    append_data(rt, sid, data[:CHUNK], cuts)
    assert cuts == []
    append_data(rt, sid, data[CHUNK:], cuts)
    assert cuts == [(0, False)]
    sessions.stop(rt, sid)
    assert cuts == [(0, False)]  # without a callback, stop's cut is left to the seal's chord
    assert b"".join(raw_chunks(rt, sid)) == data
    assert rt.meta.get_chunk(sid, 1)["final"] is True


def _created(rt: Runtime) -> str:
    sid: str = sessions.create_session(rt, {})["session_id"]
    return sid


def _paused(rt: Runtime) -> str:
    sid = active_session(rt)
    append_data(rt, sid, compressible(CHUNK + 10), [])
    sessions.pause(rt, sid)
    return sid


def _stopped(rt: Runtime) -> str:
    sid = active_session(rt)
    append_data(rt, sid, compressible(CHUNK + 10), [])
    sessions.stop(rt, sid)
    return sid


@pytest.mark.parametrize("setup", [_created, _paused, _stopped], ids=["created", "paused", "stop"])
def test_append_outside_active_is_a_conflict_and_changes_nothing(rt: Runtime, setup) -> None:
    sid = setup(rt)
    before = rt.meta.get_session(sid)
    chunks_before = rt.meta.list_chunks(sid)
    cuts: Cuts = []
    with pytest.raises(Conflict, match=before["state"]):
        append_data(rt, sid, compressible(3 * CHUNK), cuts)
    after = rt.meta.get_session(sid)
    assert cuts == []
    assert after["bytes_received"] == before["bytes_received"]
    assert after["chunks_emitted"] == before["chunks_emitted"]
    assert after["state"] == before["state"]
    assert rt.meta.list_chunks(sid) == chunks_before


def test_pause_then_resume_continues_the_same_chunk(rt: Runtime) -> None:
    sid = active_session(rt)
    data = compressible(CHUNK + 300, seed=9)
    cuts: Cuts = []
    append_data(rt, sid, data[:200], cuts)
    assert sessions.pause(rt, sid)["state"] == "PAUSED"
    assert sessions.resume(rt, sid)["state"] == "ACTIVE"
    append_data(rt, sid, data[200:], cuts)
    assert cuts == [(0, False)]
    sessions.stop(rt, sid)
    assert b"".join(raw_chunks(rt, sid)) == data


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
    sid = active_session(rt)
    cuts: Cuts = []
    with pytest.raises(TooLarge, match=f"{CHUNK} bytes are kept"):
        append_data(rt, sid, compressible(3 * CHUNK), cuts, limit=2 * CHUNK)
    assert cuts == [(0, False)]
    assert sessions.committed_length(rt, sid) == CHUNK
    assert [c["index"] for c in rt.meta.list_chunks(sid)] == [0]


def test_exceeding_the_limit_keeps_what_was_committed_before(rt: Runtime) -> None:
    sid = active_session(rt)
    data = compressible(CHUNK, seed=4)
    cuts: Cuts = []
    append_data(rt, sid, data, cuts, limit=2 * CHUNK)
    with pytest.raises(TooLarge):
        append_data(rt, sid, compressible(CHUNK + 1), cuts, limit=2 * CHUNK)
    assert rt.meta.get_session(sid)["bytes_received"] == CHUNK
    doc = sessions.stop(rt, sid)
    # More bytes followed the full tail, so it was cut as chunk 0 before the limit was
    # crossed; the refused request left nothing after it: the final chunk is empty.
    assert (doc["chunk_count"], doc["bytes_received"]) == (2, CHUNK)
    assert raw_chunks(rt, sid) == [data, b""]


def test_a_recording_at_exactly_the_limit_is_accepted(rt: Runtime) -> None:
    sid = active_session(rt)
    doc = append_data(rt, sid, compressible(2 * CHUNK), [], limit=2 * CHUNK)
    assert doc["bytes_received"] == 2 * CHUNK


def test_too_large_midway_keeps_the_cut_chunks_and_later_appends_continue_from_them(
    rt: Runtime,
) -> None:
    # The stream is read in 1 MiB blocks: the first block is taken, the second is refused.
    sid = active_session(rt)
    mib = 1024 * 1024
    data = compressible(mib + 100, seed=6)
    cuts: Cuts = []
    with pytest.raises(TooLarge) as caught:
        append_data(rt, sid, data, cuts, limit=mib + 10)
    kept = rt.meta.get_session(sid)["bytes_received"]
    assert kept == len(cuts) * CHUNK
    assert cuts == [(i, False) for i in range(mib // CHUNK - 1)]
    assert f"{kept} bytes are kept" in str(caught.value)

    tail = compressible(CHUNK + 3, seed=8)
    append_data(rt, sid, tail, cuts)
    doc = sessions.stop(rt, sid)
    assert doc["bytes_received"] == kept + len(tail)
    assert b"".join(raw_chunks(rt, sid)) == data[:kept] + tail


def test_a_failed_commit_stops_later_chunks_and_a_resumed_append_leaves_no_gap(
    rt: Runtime,
) -> None:
    sid = active_session(rt)
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

    append_data(rt, sid, data[kept:], cuts)
    sessions.stop(rt, sid)
    assert b"".join(raw_chunks(rt, sid)) == data
