"""The periodic reconcile sweep: hands back chunks, seals and anchors that nothing will run.

Celery beat (started by `lucid up` next to the workers) sends `lucid.lifecycle.reconcile` every
RECONCILE_INTERVAL_S to the merkle queue, the low-traffic queue that already publishes
seals, so it needs no worker group of its own. Two sweeps at once are harmless: each item
is claimed with a compare-and-set before it is handed back (see `lucid.lifecycle.reconcile`).
"""

from __future__ import annotations

import time

from celery.utils.log import get_task_logger

from lucid.lifecycle import reconcile as core
from lucid.runtime import get_runtime
from tasks.app import app
from tasks.canvas import enqueue_chunk, enqueue_seal
from tasks.metrics import queue_depths
from tasks.pipeline import anchor

__all__ = ["reconcile"]

log = get_task_logger(__name__)


# Not acks_late: a sweep lost with its worker is simply the next one, an interval later.
@app.task(name="lucid.lifecycle.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    """Run one sweep and enqueue what it hands back; return its counts."""
    task_id = reconcile.request.id

    def chunk(session_id: str, index: int, final: bool) -> None:
        enqueue_chunk(session_id, index, final)
        log.info(
            "event=reconcile_requeue kind=chunk task_id=%s session_id=%s index=%d",
            task_id, session_id, index,
        )  # fmt: skip

    def seal(session_id: str) -> None:
        enqueue_seal(session_id)
        log.info("event=reconcile_requeue kind=seal task_id=%s session_id=%s", task_id, session_id)

    def anchor_again(session_id: str) -> None:
        anchor.si(session_id).apply_async()
        log.info(
            "event=reconcile_requeue kind=anchor task_id=%s session_id=%s", task_id, session_id
        )

    started = time.perf_counter()
    depths = queue_depths(app)
    backlog = sum(depths[stage] for stage in ("compress", "encrypt", "hash"))
    requeue = core.Requeue(chunk=chunk, seal=seal, anchor=anchor_again)
    report = core.sweep(get_runtime(), requeue, backlog=backlog)
    counts = report.counts()
    log.info(
        "event=reconcile_sweep task_id=%s task_name=%s %s ms=%.1f",
        task_id, reconcile.name, " ".join(f"{k}={v}" for k, v in counts.items()),
        (time.perf_counter() - started) * 1000,
    )  # fmt: skip
    return counts
