"""Crypto-shredding: the wrapped key and every blob go, a tombstone with the root stays;
legal hold refuses it; a run cut short is finished by running it again."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lucid.errors import Conflict, Gone
from lucid.integrity.merkle import BLAKE3, root
from lucid.lifecycle.shred import check_not_destroyed, shred_session
from lucid.lifecycle.states import SessionState, Trigger
from lucid.pipeline import sessions
from lucid.pipeline.stages import leaf_record
from lucid.runtime import Runtime
from tests.lucid.conftest import CHUNK, compressible, sealed_session


def blobs_of(rt: Runtime, sid: str) -> list[str]:
    return list(rt.blobs.keys(f"sessions/{sid}/"))


def test_shred_destroys_key_and_blobs_and_keeps_a_provable_tombstone(rt: Runtime) -> None:
    sid = sealed_session(rt, compressible(3 * CHUNK + 100))
    before = rt.meta.get_session(sid)
    assert blobs_of(rt, sid)

    tomb = shred_session(rt, sid, by="alice")

    assert tomb["state"] == SessionState.DESTROYED
    assert tomb["key"] == {"session_public": before["key"]["session_public"]}
    assert tomb["metadata"] == {}
    assert blobs_of(rt, sid) == []
    for field in ("merkle_root", "tree_size", "anchor", "created_at"):
        assert tomb[field] == before[field]
    assert tomb["destroyed_by"] == "alice"
    assert tomb["destroyed_at"] > before["updated_at"]
    stored = rt.meta.get_session(sid)
    assert "wrapped_private" not in stored["key"]
    steps = [(h["trigger"], h["to_state"]) for h in stored["history"][-2:]]
    assert steps == [("CLEANUP", "CLEANUP"), ("CLEANUP_COMPLETE", "DESTROYED")]
    assert all("alice" in h["reason"] for h in stored["history"][-2:])
    # The leaf records stay: the anchored root is still rebuilt from them.
    chunks = rt.meta.list_chunks(sid)
    assert root(BLAKE3, [leaf_record(c).leaf_hash() for c in chunks]).hex() == tomb["merkle_root"]


def test_legal_hold_refuses_shredding_and_changes_nothing(rt: Runtime) -> None:
    sid = sealed_session(rt, compressible(CHUNK))
    rt.meta.set_legal_hold(sid, True, by="counsel")
    keys = blobs_of(rt, sid)
    with pytest.raises(Conflict, match="legal hold"):
        shred_session(rt, sid, by="alice")
    doc = rt.meta.get_session(sid)
    assert doc["state"] == SessionState.STOPPED
    assert "wrapped_private" in doc["key"]
    assert blobs_of(rt, sid) == keys
    rt.meta.set_legal_hold(sid, False, by="counsel")
    assert shred_session(rt, sid, by="alice")["state"] == SessionState.DESTROYED


def test_a_session_being_shredded_cannot_be_put_on_hold(rt: Runtime) -> None:
    sid = sealed_session(rt, compressible(CHUNK))
    rt.meta.begin_cleanup(sid, reason="test")
    with pytest.raises(Conflict, match="too late"):
        rt.meta.set_legal_hold(sid, True, by="counsel")
    shred_session(rt, sid, by="alice")
    with pytest.raises(Conflict, match="DESTROYED"):
        rt.meta.set_legal_hold(sid, True, by="counsel")


def test_a_shred_cut_short_after_cleanup_is_finished_by_running_it_again(rt: Runtime) -> None:
    sid = sealed_session(rt, compressible(2 * CHUNK))
    rt.meta.begin_cleanup(
        sid, reason="delete requested by retention", set_fields={"cleanup_by": "retention"}
    )
    assert "wrapped_private" in rt.meta.get_session(sid)["key"]  # cut short before the key went

    tomb = shred_session(rt, sid, by="admin")

    assert tomb["state"] == SessionState.DESTROYED
    assert tomb["destroyed_by"] == "retention"  # who decided, not who finished
    assert blobs_of(rt, sid) == []
    cleanups = [h for h in tomb["history"] if h["trigger"] == Trigger.CLEANUP]
    assert len(cleanups) == 1


def test_shredding_a_destroyed_session_purges_late_blobs_and_keeps_the_tombstone(
    rt: Runtime,
) -> None:
    sid = sealed_session(rt, compressible(CHUNK))
    first = shred_session(rt, sid, by="alice")
    rt.blobs.put(f"sessions/{sid}/enc/00000000", b"written by a stage still in flight")
    again = shred_session(rt, sid, by="bob")
    assert blobs_of(rt, sid) == []
    assert again == first


def test_shredding_a_live_session_removes_its_plaintext_tail_parts(rt: Runtime) -> None:
    sid = sessions.create_session(rt, {"filename": "secret.rec"})["session_id"]
    sessions.start(rt, sid)
    sessions.append(rt, sid, io.BytesIO(compressible(CHUNK + 500)), lambda s, i, f: None, offset=0)
    kinds = {key.split("/")[2] for key in blobs_of(rt, sid)}
    assert kinds == {"raw", "parts"}  # the full chunk and the 500-byte tail, both plaintext

    tomb = shred_session(rt, sid, by="alice")

    assert tomb["state"] == SessionState.DESTROYED
    assert tomb["tail"] is None
    assert blobs_of(rt, sid) == []
    with pytest.raises(Conflict):
        sessions.append(rt, sid, io.BytesIO(b"more"), lambda s, i, f: None, offset=CHUNK + 500)


def test_a_created_session_is_shredded_too(rt: Runtime) -> None:
    sid = sessions.create_session(rt, {})["session_id"]
    assert shred_session(rt, sid, by="x")["state"] == SessionState.DESTROYED


def test_check_not_destroyed_answers_gone_for_shredded_sessions(rt: Runtime) -> None:
    sid = sealed_session(rt, compressible(CHUNK))
    check_not_destroyed(rt.meta.get_session(sid))
    shred_session(rt, sid, by="alice")
    with pytest.raises(Gone, match="deleted"):
        check_not_destroyed(rt.meta.get_session(sid))


def test_two_shreds_at_once_both_end_with_the_same_tombstone(rt: Runtime) -> None:
    for _ in range(3):
        sid = sealed_session(rt, compressible(CHUNK))
        barrier = threading.Barrier(2)

        def shred(by: str, sid: str = sid, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            return str(shred_session(rt, sid, by=by)["state"])

        with ThreadPoolExecutor(2) as pool:
            states = list(pool.map(shred, ["alice", "bob"]))
        assert states == ["DESTROYED", "DESTROYED"]
        doc = rt.meta.get_session(sid)
        assert [h["trigger"] for h in doc["history"]].count("CLEANUP_COMPLETE") == 1
        assert blobs_of(rt, sid) == []
