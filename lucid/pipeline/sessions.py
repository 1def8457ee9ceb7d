"""Session lifecycle: create, start, pause, resume, stop, recover, and whole-recording ingest.

Appending bytes is `lucid.pipeline.ingest` (offset-checked, exactly once); this module moves the
session through its states and cuts the final chunk on stop.
"""

from __future__ import annotations

import uuid
from typing import Any

from lucid.crypto.keys import new_session_key
from lucid.crypto.tokens import DEFAULT_TENANT
from lucid.errors import Conflict, OffsetMismatch
from lucid.lifecycle.states import SessionState, Trigger
from lucid.pipeline.ingest import (
    OnChunk,
    Readable,
    append,
    committed_length,
    finish_stop,
    progress,
)
from lucid.runtime import Runtime

__all__ = [
    "OnChunk",
    "append",
    "committed_length",
    "create_session",
    "finish_stop",
    "ingest_recording",
    "pause",
    "progress",
    "recover",
    "resume",
    "start",
    "stop",
]


def create_session(
    rt: Runtime,
    metadata: dict[str, Any] | None = None,
    *,
    tenant: str = DEFAULT_TENANT,
    by: str | None = None,
) -> dict[str, Any]:
    """A new session of `tenant` in CREATED with its own key pair, the private half stored
    wrapped; `by` is the subject that created it."""
    session_id = uuid.uuid4().hex
    envelope = new_session_key(rt.recipient_public, session_id)
    s = rt.settings
    return rt.meta.create_session(
        session_id,
        {
            "tenant": tenant,
            "created_by": by,
            "metadata": metadata or {},
            "chunk_size": s.chunk_size,
            "compression": s.compression_algorithm,
            "compression_level": s.compression_level,
            "encryption": s.encryption_algorithm,
            "key": envelope.to_dict(),
            "bytes_received": 0,
            "chunks_emitted": 0,
            "chunk_count": None,
            "tail": None,
            "merkle_root": None,
            "anchor": None,
            "error": None,
        },
    )


# `by` below: the subject of the token that asked, recorded in the session's history.


def start(rt: Runtime, session_id: str, *, by: str | None = None) -> dict[str, Any]:
    """CREATED → STARTING → ACTIVE: the session accepts data."""
    rt.meta.apply_trigger(session_id, Trigger.START, by=by)
    return rt.meta.apply_trigger(session_id, Trigger.START_COMPLETE, by=by)


def pause(rt: Runtime, session_id: str, *, by: str | None = None) -> dict[str, Any]:
    """ACTIVE → PAUSING → PAUSED; chunks already cut keep moving through the pipeline."""
    rt.meta.apply_trigger(session_id, Trigger.PAUSE, by=by)
    return rt.meta.apply_trigger(session_id, Trigger.PAUSE_COMPLETE, by=by)


def resume(rt: Runtime, session_id: str, *, by: str | None = None) -> dict[str, Any]:
    """PAUSED → ACTIVE."""
    return rt.meta.apply_trigger(session_id, Trigger.RESUME, by=by)


def recover(rt: Runtime, session_id: str, *, by: str | None = None) -> dict[str, Any]:
    """ERROR → ACTIVE, clearing the error; stop it again to re-run the seal."""
    return rt.meta.apply_trigger(session_id, Trigger.RECOVER, set_fields={"error": None}, by=by)


def stop(
    rt: Runtime, session_id: str, on_chunk: OnChunk | None = None, *, by: str | None = None
) -> dict[str, Any]:
    """ACTIVE/PAUSED → STOPPING, then cut the final chunk (`on_chunk` gets it) and fix the
    chunk count. Idempotent: a stop that crashed midway is finished by stopping again."""
    doc = rt.meta.get_session(session_id)
    if doc["state"] == SessionState.STOPPED and doc.get("merkle_root"):
        return doc
    if doc["state"] == SessionState.STOPPING:
        return finish_stop(rt, session_id, on_chunk)
    if doc.get("chunk_count") is not None:  # recovered after an error: the cut is done
        return rt.meta.apply_trigger(session_id, Trigger.STOP, by=by)
    if doc["state"] not in (SessionState.ACTIVE, SessionState.PAUSED):
        _require_state(doc, SessionState.ACTIVE, "stop")
    try:
        # After this no tail swap can succeed (they require ACTIVE): the tail is frozen.
        rt.meta.apply_trigger(session_id, Trigger.STOP, by=by)
    except Conflict:
        if rt.meta.get_session(session_id)["state"] != SessionState.STOPPING:
            raise
    return finish_stop(rt, session_id, on_chunk)


def ingest_recording(
    rt: Runtime,
    session_id: str,
    stream: Readable,
    on_chunk: OnChunk,
    *,
    limit: int | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """A whole recording in one go: start, append everything at offset 0, stop.

    Retried on a session that already holds bytes (say, after a lost response), it appends
    nothing: OffsetMismatch names the committed length."""
    state = rt.meta.get_session(session_id)["state"]
    if state == SessionState.CREATED:
        start(rt, session_id, by=by)
    elif (committed := committed_length(rt, session_id)) != 0:
        raise OffsetMismatch(committed, 0, f"; session {session_id} is {state}")
    append(rt, session_id, stream, on_chunk, offset=0, limit=limit)
    return stop(rt, session_id, on_chunk, by=by)


def _require_state(doc: dict[str, Any], state: SessionState, action: str) -> None:
    if doc["state"] != state:
        raise Conflict(
            f"cannot {action}: session {doc['session_id']} is {doc['state']}, expected {state}"
        )
