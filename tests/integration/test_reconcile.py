"""On the real stack: work committed while the broker was down is found by the periodic
reconcile sweep (celery beat → lucid.lifecycle.reconcile) and finished without anyone asking."""

from __future__ import annotations

import io
import time
from typing import Any

from bench.corpus import corpus_blocks
from cli.stack import Stack
from lucid.integrity.restore import restore
from lucid.pipeline import sessions, stages
from lucid.runtime import Runtime
from tests.integration.conftest import CHUNK


def _broker_down(session_id: str, index: int, final: bool) -> None:
    """Ingest committed the chunk; the enqueue that should follow never happened."""


def _anchored(rt: Runtime, session_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        session = rt.meta.get_session(session_id)
        if (session.get("anchor") or {}).get("status") == "confirmed":
            return session
        assert session["state"] not in ("ERROR", "CLEANUP"), session
        assert time.monotonic() < deadline, f"not anchored in time: {session['state']}"
        time.sleep(0.2)


def _committed(rt: Runtime, data: bytes) -> str:
    """Create, start, append and stop, with nothing enqueued at any point."""
    sid: str = sessions.create_session(rt, {})["session_id"]
    sessions.start(rt, sid)
    sessions.append(rt, sid, io.BytesIO(data), _broker_down, offset=0)
    sessions.stop(rt, sid, _broker_down)
    return sid


def test_chunks_and_stop_committed_while_the_broker_was_down_end_anchored_and_restorable(
    stack: Stack, runtime: Runtime
) -> None:
    data = b"".join(corpus_blocks(3 * CHUNK + 4321, seed=31))
    sid = _committed(runtime, data)
    assert runtime.meta.get_session(sid)["state"] == "STOPPING"
    assert runtime.meta.stage_counts(sid, 4)["hashed"] == 0

    session = _anchored(runtime, sid)
    assert session["state"] == "STOPPED"
    assert session["chunk_count"] == 4
    assert b"".join(restore(runtime, sid)) == data


def test_sealed_session_whose_anchor_was_never_enqueued_gets_anchored(
    stack: Stack, runtime: Runtime
) -> None:
    data = b"".join(corpus_blocks(2 * CHUNK, seed=32))
    sid = _committed(runtime, data)
    leaves = []
    for i in range(2):  # the pipeline ran here, in-process, and stopped after the seal
        ref = stages.encrypt_stage(runtime, stages.compress_chunk(runtime, sid, i, i == 1))
        leaves.append(stages.hash_chunk(runtime, ref))
    root = stages.seal_session(runtime, sid, leaves)
    assert runtime.meta.get_session(sid)["anchor"] is None

    session = _anchored(runtime, sid)
    assert session["merkle_root"] == root
    assert b"".join(restore(runtime, sid)) == data
