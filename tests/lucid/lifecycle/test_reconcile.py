"""The reconcile sweep on a real metadata server and file blob store: what it hands back,
what it leaves alone, and which sessions it fails because their data is gone."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from lucid.errors import ConfigError
from lucid.integrity.restore import restore
from lucid.lifecycle import reconcile
from lucid.lifecycle.states import ChunkStage, SessionState, Trigger
from lucid.pipeline import sessions, stages
from lucid.runtime import Runtime
from lucid.settings import load_settings
from tests.lucid.conftest import CHUNK, MakeRuntime, compressible, push_chunks

AFTER = timedelta(seconds=60)  # RECONCILE_AFTER_S's default


def _no_enqueue(session_id: str, index: int, final: bool) -> None:
    """The broker was down: ingest committed the chunk, nothing was enqueued."""


@dataclass
class Handed:
    """What a sweep handed back, recorded in order."""

    chunks: list[tuple[str, int, bool]] = field(default_factory=list)
    seals: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)

    def requeue(self) -> reconcile.Requeue:
        return reconcile.Requeue(
            chunk=lambda s, i, f: self.chunks.append((s, i, f)),
            seal=self.seals.append,
            anchor=self.anchors.append,
        )


def _later(by: timedelta = AFTER + timedelta(seconds=1)) -> datetime:
    return datetime.now(UTC) + by


def _recording(rt: Runtime, chunks: int, *, stop: bool) -> tuple[str, bytes]:
    """A session with `chunks` committed chunks: the last one partial and final if stopped,
    else full, with a few bytes after it still being filled."""
    data = compressible(chunks * CHUNK + (-(CHUNK // 2) if stop else 10))
    sid: str = sessions.create_session(rt, {})["session_id"]
    sessions.start(rt, sid)
    sessions.append(rt, sid, io.BytesIO(data), _no_enqueue, offset=0)
    if stop:
        sessions.stop(rt, sid, _no_enqueue)
    return sid, data


def test_fresh_chunks_seals_and_anchors_are_left_alone(rt: Runtime) -> None:
    live, _ = _recording(rt, 2, stop=False)
    stopping, _ = _recording(rt, 2, stop=True)
    handed = Handed()
    report = reconcile.sweep(rt, handed.requeue(), now=_later(AFTER - timedelta(seconds=5)))
    assert handed == Handed()
    assert report.counts() == dict.fromkeys(report.counts(), 0)
    assert {live, stopping}  # both were committed, just not idle long enough


def test_idle_chunks_are_handed_back_with_their_final_flag_once_per_threshold(
    rt: Runtime,
) -> None:
    sid, _ = _recording(rt, 3, stop=True)
    when = _later()
    handed = Handed()
    report = reconcile.sweep(rt, handed.requeue(), now=when)
    assert handed.chunks == [(sid, 0, False), (sid, 1, False), (sid, 2, True)]
    assert report.chunks == [(sid, 0), (sid, 1), (sid, 2)]

    again = Handed()
    reconcile.sweep(rt, again.requeue(), now=when + timedelta(seconds=30))
    assert again.chunks == []  # claimed: not flooded every sweep

    later = Handed()
    reconcile.sweep(rt, later.requeue(), now=when + AFTER + timedelta(seconds=1))
    assert [c[1] for c in later.chunks] == [0, 1, 2]  # still not done: handed back again


def test_hashed_chunks_are_not_handed_back(rt: Runtime) -> None:
    sid, _ = _recording(rt, 2, stop=False)
    ref = stages.encrypt_stage(rt, stages.compress_chunk(rt, sid, 0, False))
    stages.hash_chunk(rt, ref)
    handed = Handed()
    reconcile.sweep(rt, handed.requeue(), now=_later())
    assert handed.chunks == [(sid, 1, False)]


@pytest.mark.parametrize("trigger", [Trigger.ERROR, Trigger.CLEANUP])
def test_chunks_of_sessions_in_error_or_cleanup_are_ignored(rt: Runtime, trigger: Trigger) -> None:
    sid, _ = _recording(rt, 2, stop=True)
    rt.meta.apply_trigger(sid, trigger, reason="test")
    handed = Handed()
    report = reconcile.sweep(rt, handed.requeue(), now=_later())
    assert handed == Handed()
    assert report.skipped == 2
    assert rt.meta.get_session(sid)["history"][-1]["trigger"] == trigger


def test_missing_raw_blob_fails_the_session_naming_the_chunk(rt: Runtime) -> None:
    sid, _ = _recording(rt, 3, stop=True)
    rt.blobs.delete(rt.meta.get_chunk(sid, 1)["raw_key"])
    handed = Handed()
    report = reconcile.sweep(rt, handed.requeue(), now=_later())

    session = rt.meta.get_session(sid)
    assert session["state"] == "ERROR"
    assert "chunk 1" in session["error"]
    assert "gone" in session["error"]
    assert "/" not in session["error"]  # no blob keys or server paths
    assert session["history"][-1]["reason"] == session["error"]
    assert report.failed == [sid]
    assert handed.chunks == [(sid, 0, False)]  # chunk 2 comes after the session failed
    assert handed.seals == []


def test_compressed_blob_is_enough_when_the_raw_one_is_gone(rt: Runtime) -> None:
    sid, _ = _recording(rt, 2, stop=False)
    stages.compress_chunk(rt, sid, 0, False)
    rt.blobs.delete(rt.meta.get_chunk(sid, 0)["raw_key"])
    handed = Handed()
    reconcile.sweep(rt, handed.requeue(), now=_later())
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"
    assert handed.chunks == [(sid, 0, False), (sid, 1, False)]


def test_raw_blob_is_looked_up_under_the_key_its_record_names(rt: Runtime) -> None:
    sid, _ = _recording(rt, 1, stop=False)
    moved = f"sessions/{sid}/raw/00000000.attempt-2"
    rt.blobs.put(moved, rt.blobs.get(rt.meta.get_chunk(sid, 0)["raw_key"]))
    rt.blobs.delete(rt.meta.get_chunk(sid, 0)["raw_key"])
    rt.meta.record_chunk(sid, 0, ChunkStage.RECEIVED, {"raw_key": moved})
    handed = Handed()
    reconcile.sweep(rt, handed.requeue(), now=_later())
    assert rt.meta.get_session(sid)["state"] == "ACTIVE"
    assert handed.chunks == [(sid, 0, False)]


def test_idle_stopping_session_without_root_gets_its_seal_handed_back(rt: Runtime) -> None:
    sid, _ = _recording(rt, 2, stop=True)
    push_chunks(rt, sid)
    assert reconcile.sweep(rt, Handed().requeue(), now=_later(timedelta(seconds=5))).seals == []
    handed = Handed()
    reconcile.sweep(rt, handed.requeue(), now=_later())
    assert handed.seals == [sid]
    assert handed.chunks == []


def test_stop_interrupted_before_the_final_cut_is_finished_and_sealed(rt: Runtime) -> None:
    sid, _ = _recording(rt, 2, stop=False)
    # The stop's first write landed (ACTIVE -> STOPPING), then its process died.
    rt.meta.apply_trigger(sid, Trigger.STOP)
    assert rt.meta.get_session(sid)["chunk_count"] is None
    handed = Handed()
    report = reconcile.sweep(rt, handed.requeue(), now=_later())
    session = rt.meta.get_session(sid)
    assert session["chunk_count"] == 3  # two full chunks and the final one with 10 bytes
    assert rt.meta.get_chunk(sid, 2)["final"] is True
    assert report.stops == [sid]
    assert handed.seals == [sid]
    assert (sid, 2, True) in handed.chunks  # the final chunk went on to the pipeline


def test_stopping_session_whose_chunks_are_moving_is_not_resealed(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(RECONCILE_AFTER_S="0.5")
    sid, _ = _recording(rt, 2, stop=True)
    time.sleep(0.6)  # the session is idle now ...
    stages.compress_chunk(rt, sid, 0, False)  # ... but one of its chunks just moved
    handed = Handed()
    reconcile.sweep(rt, handed.requeue())
    assert handed.seals == []
    assert handed.chunks == [(sid, 1, True)]


def test_sealed_session_without_confirmed_anchor_gets_its_anchor_handed_back(
    rt: Runtime,
) -> None:
    sid, _ = _recording(rt, 2, stop=True)
    stages.seal_session(rt, sid, push_chunks(rt, sid))
    handed = Handed()
    reconcile.sweep(rt, handed.requeue(), now=_later())
    assert (handed.anchors, handed.seals, handed.chunks) == ([sid], [], [])

    stages.anchor_session(rt, sid)
    done = Handed()
    reconcile.sweep(rt, done.requeue(), now=_later(2 * AFTER + timedelta(seconds=2)))
    assert done == Handed()


def test_two_sweeps_at_once_hand_each_item_back_once(rt: Runtime) -> None:
    sids = [_recording(rt, 3, stop=True)[0] for _ in range(3)]
    when = _later()
    handed = [Handed(), Handed()]
    start = threading.Barrier(2)

    def run(h: Handed) -> None:
        start.wait()
        reconcile.sweep(rt, h.requeue(), now=when)

    threads = [threading.Thread(target=run, args=(h,)) for h in handed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = sorted(handed[0].chunks + handed[1].chunks)
    assert together == sorted((s, i, i == 2) for s in sids for i in range(3))


def test_sweeps_alone_take_a_session_committed_while_the_broker_was_down_to_anchored(
    rt: Runtime,
) -> None:
    """Nothing is enqueued at ingest or stop; the sweeps' hand-backs, run in order, are all
    it takes to seal, anchor and restore the recording."""
    sid, data = _recording(rt, 3, stop=True)
    leaves: list[stages.LeafRef] = []

    def chunk(s: str, i: int, final: bool) -> None:
        ref = stages.encrypt_stage(rt, stages.compress_chunk(rt, s, i, final))
        leaves.append(stages.hash_chunk(rt, ref))

    def seal(s: str) -> None:
        stages.seal_session(rt, s, leaves)

    def anchor(s: str) -> None:
        stages.anchor_session(rt, s)

    requeue = reconcile.Requeue(chunk=chunk, seal=seal, anchor=anchor)
    # Run inline, the chunks let the seal go in the same sweep; the session stays claimed
    # for a threshold, so its anchor goes in the next one.
    first = reconcile.sweep(rt, requeue, now=_later())
    assert (len(first.chunks), first.seals, first.anchors) == (3, [sid], [])
    second = reconcile.sweep(rt, requeue, now=_later(2 * (AFTER + timedelta(seconds=1))))
    assert (second.chunks, second.seals, second.anchors) == ([], [], [sid])
    session = rt.meta.get_session(sid)
    assert session["state"] == "STOPPED"
    assert session["anchor"]["status"] == "confirmed"
    assert b"".join(restore(rt, sid)) == data


def test_reconcile_settings_are_validated() -> None:
    s = load_settings({})
    assert (s.reconcile_after_s, s.reconcile_interval_s) == (60.0, 30.0)
    with pytest.raises(ConfigError, match="RECONCILE_AFTER_S='0'"):
        load_settings({"RECONCILE_AFTER_S": "0"})
    with pytest.raises(ConfigError, match="RECONCILE_INTERVAL_S='soon'"):
        load_settings({"RECONCILE_INTERVAL_S": "soon"})


def test_session_states_are_plain_enum_members(rt: Runtime) -> None:
    sid, _ = _recording(rt, 1, stop=False)
    assert rt.meta.session_states([sid, "0" * 32]) == {sid: SessionState.ACTIVE}


def test_a_backlog_in_the_chunk_queues_defers_chunks_and_seals_but_not_anchors(
    rt: Runtime,
) -> None:
    live, _ = _recording(rt, 2, stop=False)
    stopping, _ = _recording(rt, 2, stop=True)
    handed = Handed()
    report = reconcile.sweep(rt, handed.requeue(), now=_later(), backlog=7)
    assert (handed.chunks, handed.seals) == ([], [])
    assert report.deferred == 7
    assert {live, stopping}
    # Once the queues drain, the same idle chunks are handed back.
    reconcile.sweep(rt, handed.requeue(), now=_later())
    assert {s for s, _, _ in handed.chunks} == {live, stopping}
