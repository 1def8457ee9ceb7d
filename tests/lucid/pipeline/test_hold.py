"""Pausing one session's pipeline: its chunks are held, not lost; resume hands back each
held chunk once (and the seal of a stopped session); other sessions are not held."""

from __future__ import annotations

import pytest

from lucid.errors import Gone
from lucid.lifecycle.shred import shred_session
from lucid.pipeline import stages
from lucid.pipeline.hold import hold_if_paused, pause_pipeline, resume_pipeline
from lucid.pipeline.statistics import pipeline_status
from lucid.runtime import Runtime
from tests.lucid.conftest import CHUNK, compressible, record


class Handed:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, int, bool]] = []
        self.seals: list[str] = []

    def chunk(self, sid: str, index: int, final: bool) -> None:
        self.chunks.append((sid, index, final))

    def seal(self, sid: str) -> None:
        self.seals.append(sid)


def test_paused_session_holds_its_chunks_and_resume_hands_each_back_once(rt: Runtime) -> None:
    sid, cuts = record(rt, compressible(2 * CHUNK + 5))
    other, _ = record(rt, compressible(CHUNK))
    pause_pipeline(rt, sid, by="ops")
    for index, _final in cuts:
        assert hold_if_paused(rt, sid, index)
    assert not hold_if_paused(rt, other, 0)
    status = pipeline_status(rt, sid, {})
    assert status["paused"] and status["held"] == 3 and status["queued"] == 0
    assert rt.meta.get_chunk(sid, 0)["held"] is True

    handed = Handed()
    doc, released = resume_pipeline(rt, sid, "ops", handed.chunk, handed.seal)
    assert released == [0, 1, 2] and not doc["pipeline_paused"]
    assert handed.chunks == [(sid, 0, False), (sid, 1, False), (sid, 2, True)]
    assert handed.seals == [sid]  # stopped while paused: its chord never completed
    again = Handed()
    assert resume_pipeline(rt, sid, "ops", again.chunk, again.seal)[1] == []
    assert not hold_if_paused(rt, sid, 0)
    stages.compress_chunk(rt, sid, 0, False)
    assert pipeline_status(rt, sid, {})["queued"] == 3


def test_a_hold_that_races_a_resume_is_undone(rt: Runtime) -> None:
    sid, _ = record(rt, compressible(CHUNK))
    pause_pipeline(rt, sid, by="ops")
    # The resume lands between the hold's mark and its second read of the flag.
    original = rt.meta.mark_chunk_held

    def mark_then_resume(session_id: str, index: int, held: bool) -> None:
        original(session_id, index, held)
        if held:
            rt.meta.set_pipeline_paused(session_id, False, by="ops")

    rt.meta.mark_chunk_held = mark_then_resume  # type: ignore[method-assign]
    assert not hold_if_paused(rt, sid, 0)
    assert rt.meta.get_chunk(sid, 0)["held"] is False


def test_pausing_a_deleted_session_is_gone(rt: Runtime) -> None:
    sid, _ = record(rt, b"abc")
    shred_session(rt, sid, by="test")
    with pytest.raises(Gone):
        pause_pipeline(rt, sid, by="ops")
