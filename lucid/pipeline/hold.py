"""Pausing one session's pipeline: its chunks wait, held, until it is resumed.

A paused session carries `pipeline_paused: true`. The compress stage asks `hold_if_paused`
before doing any work: a chunk of a paused session is marked `held` on its record and its
chain ends there, so the worker moves on to the next message at once. Nothing blocks the
queues: other sessions' chunks behind it run as usual. Chunks already past compress finish.

Resume clears the flag first and then hands every held chunk back to the pipeline.
`hold_if_paused` does it the other way round (marks the chunk held, then reads the flag
again and proceeds itself if the flag went meanwhile), so of a resume and a hold racing
at least one sees the other: a chunk is never left held on a running pipeline. At worst
a chunk runs twice, which every stage converges on.

A chain that ended held leaves its seal chord (if one was published) waiting forever, so
resume also publishes the seal again for a session that is STOPPING without a root.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lucid.lifecycle.shred import check_not_destroyed
from lucid.lifecycle.states import SessionState
from lucid.runtime import Runtime

__all__ = ["hold_if_paused", "pause_pipeline", "resume_pipeline"]

log = logging.getLogger(__name__)

OnChunk = Callable[[str, int, bool], None]
OnSeal = Callable[[str], None]


def pause_pipeline(rt: Runtime, session_id: str, by: str) -> dict[str, Any]:
    """Hold the session's chunks that have not started compressing; return the session."""
    check_not_destroyed(rt.meta.get_session(session_id))
    doc = rt.meta.set_pipeline_paused(session_id, True, by=by)
    log.info("event=pipeline_paused session_id=%s by=%s", session_id, by)
    return doc


def resume_pipeline(
    rt: Runtime, session_id: str, by: str, on_chunk: OnChunk, on_seal: OnSeal
) -> tuple[dict[str, Any], list[int]]:
    """Release the session's held chunks to `on_chunk` (and its seal to `on_seal` when it
    is waiting for one); return the session and the indexes handed back."""
    check_not_destroyed(rt.meta.get_session(session_id))
    doc = rt.meta.set_pipeline_paused(session_id, False, by=by)
    released = []
    for chunk in rt.meta.release_held_chunks(session_id):
        on_chunk(session_id, int(chunk["index"]), bool(chunk.get("final", False)))
        released.append(int(chunk["index"]))
    waiting_for_seal = doc.get("chunk_count") is not None and not doc.get("merkle_root")
    if doc["state"] == SessionState.STOPPING and waiting_for_seal:
        on_seal(session_id)  # a chord whose chain was held never completes
    log.info(
        "event=pipeline_resumed session_id=%s by=%s released=%d", session_id, by, len(released)
    )
    return doc, released


def hold_if_paused(rt: Runtime, session_id: str, index: int) -> bool:
    """Whether chunk `index` must wait (its session's pipeline is paused); if so it is
    marked held, to be handed back by `resume_pipeline`."""
    if not rt.meta.pipeline_paused(session_id):
        return False
    rt.meta.mark_chunk_held(session_id, index, True)
    if rt.meta.pipeline_paused(session_id):
        log.info("event=chunk_held session_id=%s index=%d", session_id, index)
        return True
    # Resumed between the two reads: the resume may not have seen the mark; run it here.
    rt.meta.mark_chunk_held(session_id, index, False)
    return False
