"""The periodic end-of-life sweep: crypto-shred sessions past retention, end abandoned ones.

Celery beat (started by `lucid up`) sends `lucid.lifecycle.retention` every
RETENTION_SWEEP_INTERVAL_S to the merkle queue, like the reconcile sweep. The work is
`lucid.lifecycle.retention.sweep`; this module only supplies how an abandoned session is
stopped here: the final chunk and the seal go to the pipeline as on `POST .../stop`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.utils.log import get_task_logger

from lucid.lifecycle import retention as core
from lucid.pipeline import sessions
from lucid.pipeline.ingest import OnChunk
from lucid.runtime import Runtime, get_runtime
from tasks.app import app
from tasks.canvas import enqueue_chunk, enqueue_seal

__all__ = ["retention_sweep", "run_retention"]

log = get_task_logger(__name__)


def run_retention(
    rt: Runtime,
    now: datetime | None = None,
    *,
    on_chunk: OnChunk = enqueue_chunk,
    on_seal: Callable[[str], None] = enqueue_seal,
) -> dict[str, Any]:
    """One sweep at `now` (default: the current time); return what it did by session id.

    An abandoned session's final chunk goes to `on_chunk` and its seal to `on_seal`."""

    def stop_and_seal(session_id: str) -> object:
        doc = sessions.stop(rt, session_id, on_chunk)
        if not doc.get("merkle_root"):
            on_seal(session_id)
        return doc

    return core.sweep(rt, now or datetime.now(UTC), stop_and_seal).to_dict()


# Not acks_late: a sweep lost with its worker is simply the next one, an interval later.
@app.task(name="lucid.lifecycle.retention", ignore_result=True)
def retention_sweep(now: str | None = None) -> dict[str, Any]:
    """Run one end-of-life sweep (`now`: an ISO 8601 time, for a sweep 'as of' then)."""
    started = time.perf_counter()
    report = run_retention(get_runtime(), datetime.fromisoformat(now) if now else None)
    log.info(
        "event=retention_sweep task_id=%s task_name=%s %s ms=%.1f",
        retention_sweep.request.id, retention_sweep.name,
        " ".join(f"{k}={len(v)}" for k, v in report.items()),
        (time.perf_counter() - started) * 1000,
    )  # fmt: skip
    return report
