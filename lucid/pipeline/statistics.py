"""What a session's pipeline did and how it went, and the same for the whole deployment.

Counts and bytes come from the chunk records (the store's truth); time spent per stage
is measured by the tasks and handed in by the caller (`tasks.metrics` keeps it in Redis,
which this package does not import). Times between events come from the session's
history and stamps, all ISO 8601 UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lucid.lifecycle.states import SessionState
from lucid.runtime import Runtime

__all__ = ["pipeline_status", "session_statistics", "system_statistics"]

Doc = dict[str, Any]
StageTimes = dict[str, dict[str, float]]


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 6)


def _entered(doc: Doc, state: SessionState) -> str | None:
    """When the session first entered `state`, from its history."""
    for step in doc.get("history", []):
        if step.get("to_state") == state:
            return str(step["at"])
    return None


def pipeline_status(rt: Runtime, session_id: str, stage_times: StageTimes) -> Doc:
    """Per-stage counts and times for one session, and what is queued, held or failed."""
    doc = rt.meta.get_session(session_id)
    totals = rt.meta.chunk_totals(session_id)
    counts = rt.meta.stage_counts(session_id, totals["chunks"])
    in_flight = totals["chunks"] - counts["hashed"] - totals["held"]
    return {
        "session_id": session_id,
        "state": doc["state"],
        "paused": bool(doc.get("pipeline_paused")),
        "paused_by": doc.get("pipeline_paused_by"),
        "paused_at": doc.get("pipeline_paused_at"),
        "chunks": {"total": totals["chunks"], **counts},
        "held": totals["held"],
        "queued": max(in_flight, 0),
        "failed": doc.get("error"),
        "stages": stage_times,
    }


def session_statistics(rt: Runtime, session_id: str, stage_times: StageTimes) -> Doc:
    """Bytes per stage, compression ratio, time per stage, throughput and latencies."""
    doc = rt.meta.get_session(session_id)
    totals = rt.meta.chunk_totals(session_id)
    plaintext, compressed = totals["plaintext_bytes"], totals["compressed_bytes"]
    started = _entered(doc, SessionState.ACTIVE)
    stopped = _entered(doc, SessionState.STOPPING)
    # From the start of recording to the seal: what a client waits for its proof.
    processing = _seconds(started or doc.get("created_at"), doc.get("sealed_at"))
    return {
        "session_id": session_id,
        "state": doc["state"],
        "chunks": totals["chunks"],
        "bytes": {
            "received": doc.get("bytes_received") or 0,
            "plaintext": plaintext,
            "compressed": compressed,
            "ciphertext": totals["ciphertext_bytes"],
        },
        "compression_ratio": round(plaintext / compressed, 4) if compressed else None,
        "stages": stage_times,
        "recording_seconds": _seconds(started, stopped),
        "stop_to_seal_seconds": _seconds(stopped, doc.get("sealed_at")),
        "seal_to_anchor_seconds": _seconds(doc.get("sealed_at"), doc.get("anchor_at")),
        "throughput_bytes_per_second": (
            round(plaintext / processing, 1) if processing and doc.get("sealed_at") else None
        ),
    }


def system_statistics(rt: Runtime, queues: StageTimes, workers: dict[str, int]) -> Doc:
    """Sessions by state, what is stored, and per stage the queue depth and workers."""
    stored = rt.meta.stored_totals()
    return {
        "sessions": rt.meta.sessions_by_state(),
        "stored": {"chunks": stored["chunks"], "ciphertext_bytes": stored["bytes"]},
        "stages": {
            stage: {"workers": workers.get(stage, 0), **numbers}
            for stage, numbers in queues.items()
        },
    }
