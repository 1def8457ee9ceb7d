"""Stopping and recovering a session around crashes: a stop retried or finished after a
crash, appends refused after recovery, and a stop racing an append."""

from __future__ import annotations

from typing import Any

import pytest

from lucid.errors import Conflict, OffsetMismatch
from lucid.lifecycle.states import Trigger
from lucid.pipeline import sessions
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.lucid.conftest import CHUNK, compressible, incompressible, record
from tests.lucid.pipeline.session_helpers import (
    Cuts,
    Interleaved,
    active_session,
    append_data,
    blob_keys,
    seal_and_restore,
)


def test_stop_retried_after_a_crash_between_the_final_insert_and_the_chunk_count(
    rt: Runtime,
) -> None:
    sid = active_session(rt)
    data = compressible(2 * CHUNK + 70, seed=38)
    append_data(rt, sid, data, [])

    def crash_on_final(session_id: str, index: int, final: bool) -> None:
        raise ConnectionError("broker down while handing on the final chunk")

    with pytest.raises(ConnectionError):
        sessions.stop(rt, sid, crash_on_final)
    doc = rt.meta.get_session(sid)
    assert (doc["state"], doc["chunk_count"]) == ("STOPPING", None)
    assert rt.meta.get_chunk(sid, 2)["final"] is True
    with pytest.raises(Conflict, match="STOPPING"):
        append_data(rt, sid, b"late", [], offset=len(data))
    late: Cuts = []
    doc = sessions.stop(rt, sid, lambda s, i, f: late.append((i, f)))
    assert late == []  # the final chunk's record exists: the seal's chord takes it
    assert (doc["state"], doc["chunk_count"], doc["bytes_received"]) == (
        "STOPPING",
        3,
        len(data),
    )
    assert sessions.committed_length(rt, sid) == len(data)
    assert not [k for k in blob_keys(rt, sid) if "/parts/" in k]
    assert seal_and_restore(rt, sid) == data


def test_finish_stop_completes_a_session_left_in_stopping_before_the_final_cut(
    rt: Runtime,
) -> None:
    sid = active_session(rt)
    data = compressible(CHUNK + 70, seed=39)
    append_data(rt, sid, data, [])
    rt.meta.apply_trigger(sid, Trigger.STOP)  # ... and the process died
    cuts: Cuts = []
    doc = sessions.finish_stop(rt, sid, lambda s, i, f: cuts.append((i, f)))
    assert cuts == [(1, True)]
    assert (doc["chunk_count"], doc["bytes_received"]) == (2, len(data))
    assert sessions.finish_stop(rt, sid, lambda s, i, f: cuts.append((i, f)))["chunk_count"] == 2
    assert cuts == [(1, True)]
    assert seal_and_restore(rt, sid) == data


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
            append_data(rt, sid, b"more", [], offset=offset)
        assert not isinstance(caught.value, OffsetMismatch)
    assert sessions.committed_length(rt, sid) == len(data)
    assert sessions.stop(rt, sid)["state"] == "STOPPING"
    assert seal_and_restore(rt, sid) == data


def test_recover_after_a_failure_during_stop_refuses_appends_and_stop_finishes(
    rt: Runtime,
) -> None:
    sid = active_session(rt)
    data = compressible(CHUNK + 5, seed=42)
    append_data(rt, sid, data, [])

    def crash(session_id: str, index: int, final: bool) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        sessions.stop(rt, sid, crash)
    rt.meta.apply_trigger(sid, Trigger.ERROR, reason="stop failed")
    sessions.recover(rt, sid)
    with pytest.raises(Conflict, match="already has its final chunk"):
        append_data(rt, sid, b"more", [])
    doc = sessions.stop(rt, sid)
    assert (doc["state"], doc["chunk_count"]) == ("STOPPING", 2)
    assert seal_and_restore(rt, sid) == data


@pytest.mark.parametrize("size", [100, 3 * CHUNK], ids=["tail", "chunks"])
def test_a_stop_while_an_append_is_being_read_refuses_the_append(rt: Runtime, size: int) -> None:
    sid = active_session(rt)
    head = compressible(CHUNK + 1, seed=44)
    append_data(rt, sid, head, [])
    stopped: list[dict[str, Any]] = []
    body = Interleaved(incompressible(size), lambda: stopped.append(sessions.stop(rt, sid)))
    with pytest.raises(Conflict, match="became STOPPING") as caught:
        sessions.append(rt, sid, body, lambda s, i, f: None, offset=len(head))
    assert not isinstance(caught.value, OffsetMismatch)
    assert stopped[0]["chunk_count"] == 2
    assert sessions.committed_length(rt, sid) == len(head)
    assert seal_and_restore(rt, sid) == head
    assert not [k for k in blob_keys(rt, sid) if "/parts/" in k or "/raw/" in k]


def test_stop_records_a_chunk_an_append_committed_but_did_not_record(rt: Runtime) -> None:
    sid = active_session(rt)
    data = compressible(2 * CHUNK + 40, seed=45)
    append_data(rt, sid, data[: CHUNK + 40], [])
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
    assert seal_and_restore(rt, sid) == data[: 2 * CHUNK]


def test_a_session_recovered_after_a_stop_that_crashed_past_its_final_cut_takes_no_bytes(
    rt: Runtime,
) -> None:
    # Appends derive the state from the tail alone when they can: not here, where the tail
    # still lists parts that are now inside the final chunk's record.
    sid = active_session(rt)
    data = compressible(CHUNK + 70, seed=39)
    append_data(rt, sid, data, [])

    def crash_on_final(session_id: str, index: int, final: bool) -> None:
        raise ConnectionError("broker down while handing on the final chunk")

    with pytest.raises(ConnectionError):
        sessions.stop(rt, sid, crash_on_final)
    assert rt.meta.get_session(sid)["tail"]["parts"]  # the stop died before clearing it
    rt.meta.apply_trigger(sid, Trigger.ERROR, reason="operator")
    sessions.recover(rt, sid)
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"
    with pytest.raises(Conflict, match="already has its final chunk"):
        append_data(rt, sid, b"late", [], offset=len(data))
    assert sessions.committed_length(rt, sid) == len(data)
