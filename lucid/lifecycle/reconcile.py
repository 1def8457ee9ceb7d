"""The reconciler: finds committed work that nothing will pick up again, and hands it back.

Ingest commits a chunk (its record, stage RECEIVED) and only then enqueues it; `stop`
commits the chunk count and only then enqueues the seal. A broker that is down between
the two leaves the work committed but never queued. A sweep, run periodically, finds:

1. chunks below HASHED idle for RECONCILE_AFTER_S, in sessions still going somewhere
   (not ERROR, CLEANUP or DESTROYED) → the chunk's chain again; if the chunk's input is
   gone (no raw and no compressed blob), the session goes to ERROR naming the chunk;
2. sessions STOPPING whose count is fixed but that have no root, idle (neither the session
   nor any of its chunks changed) → the seal again; STOPPING with no count yet → the rest
   of the stop;
3. sessions STOPPED with a root but no confirmed anchor receipt → the anchor again.

Every stage converges when run twice, so a duplicate costs CPU only, and little: queues
are FIFO, so a duplicate of work still queued runs after the original and finds it done.
Each item is claimed with a compare-and-set stamp (`reconciled_at`) before it is handed
back, so two sweeps at once hand it back once, and an item is handed back again only
after another RECONCILE_AFTER_S: a long backlog is not flooded every sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lucid.errors import Conflict, InvalidTransition, NotFound
from lucid.lifecycle.states import ChunkStage, SessionState, Trigger
from lucid.pipeline.ingest import finish_stop
from lucid.runtime import Runtime
from lucid.storage import layout

__all__ = ["Requeue", "SweepReport", "sweep"]

log = logging.getLogger(__name__)

# Items of each kind looked at per sweep; the rest wait for the next sweep.
BATCH = 500
_DONE_WITH = frozenset({SessionState.ERROR, SessionState.CLEANUP, SessionState.DESTROYED})


@dataclass(frozen=True)
class Requeue:
    """Where handed-back work goes: the enqueue functions (tasks.canvas in production)."""

    chunk: Callable[[str, int, bool], None]
    seal: Callable[[str], None]
    anchor: Callable[[str], None]


@dataclass
class SweepReport:
    """What one sweep did, for the log line."""

    chunks: list[tuple[str, int]] = field(default_factory=list)
    seals: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: int = 0  # idle chunks of sessions in ERROR, CLEANUP, DESTROYED or deleted
    deferred: int = 0  # chunk tasks queued: chunks and seals wait until the queues drain

    def counts(self) -> dict[str, int]:
        """Number of items of each kind."""
        return {k: (v if isinstance(v, int) else len(v)) for k, v in asdict(self).items()}


def sweep(
    rt: Runtime, requeue: Requeue, *, now: datetime | None = None, backlog: int = 0
) -> SweepReport:
    """Hand back every idle chunk, seal and anchor (see the module docstring).

    `backlog` is how many chunk tasks wait in the compress, encrypt and hash queues. While
    any wait, chunks and seals are left alone: a chunk that is merely queued behind others
    looks idle too, and handing it back would only add copies to the very backlog that
    keeps it waiting (a flood that feeds itself on a busy machine). A chunk really lost is
    handed back once the queues have drained.
    """
    now = now or datetime.now(UTC)
    before = _stamp(now - timedelta(seconds=rt.settings.reconcile_after_s))
    stamp = _stamp(now)
    report = SweepReport()
    if backlog:
        report.deferred = backlog
    else:
        _requeue_chunks(rt, requeue, before, stamp, report)
        _requeue_stopping(rt, requeue, before, stamp, report)
    _requeue_anchors(rt, requeue, before, stamp, report)
    return report


def _stamp(moment: datetime) -> str:
    """The metadata store's time format: ISO 8601 UTC, fixed precision, sortable as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _requeue_chunks(
    rt: Runtime, requeue: Requeue, before: str, now: str, report: SweepReport
) -> None:
    idle = rt.meta.idle_chunks(before, limit=BATCH)
    states = rt.meta.session_states(sorted({c["session_id"] for c in idle}))
    for chunk in sorted(idle, key=lambda c: (c["session_id"], c["index"])):
        session_id, index = chunk["session_id"], int(chunk["index"])
        if not rt.meta.claim_chunk(session_id, index, before, now):
            continue  # another sweep has it
        state = states.get(session_id)
        if state is None or state in _DONE_WITH:
            report.skipped += 1
            continue
        if _input_gone(rt, chunk):
            reason = (
                f"chunk {index} cannot be processed: its recorded bytes are gone "
                f"(it reached {ChunkStage(int(chunk['stage'])).name}, no raw or compressed blob)"
            )
            if _fail(rt, session_id, reason):
                report.failed.append(session_id)
            states[session_id] = SessionState.ERROR
            continue
        requeue.chunk(session_id, index, bool(chunk.get("final", False)))
        report.chunks.append((session_id, index))


def _input_gone(rt: Runtime, chunk: dict[str, Any]) -> bool:
    """Whether nothing is left to compute the chunk's ciphertext from.

    The raw blob goes only after the chunk is HASHED; until then the compressed blob (kept
    until HASHED too) is enough for encrypt and hash. The record is read again when both
    are missing: a hash stage may have finished since the sweep's query.
    """
    session_id, index = chunk["session_id"], int(chunk["index"])
    raw_key = chunk.get("raw_key")
    if (raw_key and rt.blobs.exists(raw_key)) or rt.blobs.exists(
        layout.compressed_key(session_id, index)
    ):
        return False
    try:
        return int(rt.meta.get_chunk(session_id, index)["stage"]) < ChunkStage.HASHED
    except NotFound:  # the session was deleted meanwhile: nothing to fail
        return False


def _fail(rt: Runtime, session_id: str, reason: str) -> bool:
    """Move the session to ERROR with `reason`; False if it is already done with."""
    for _ in range(3):  # the session may move between the read and the compare-and-set
        state = SessionState(rt.meta.get_session(session_id)["state"])
        if state in _DONE_WITH:
            return False
        try:
            rt.meta.apply_trigger(
                session_id,
                Trigger.ERROR,
                reason=reason,
                set_fields={"error": reason},
                expect_state=state,
            )
        except (Conflict, InvalidTransition):
            continue
        log.warning("event=reconcile_failed session_id=%s reason=%r", session_id, reason)
        return True
    return False


def _requeue_stopping(
    rt: Runtime, requeue: Requeue, before: str, now: str, report: SweepReport
) -> None:
    for session in rt.meta.unsealed_sessions(before, limit=BATCH):
        session_id = session["session_id"]
        if rt.meta.chunks_changed_since(session_id, before):
            continue  # its chunks are still moving: look again once they stop
        if not rt.meta.claim_session(session_id, SessionState.STOPPING, before, now):
            continue
        if session.get("chunk_count") is None:
            if not _finish_stop(rt, session_id, requeue):
                continue
            report.stops.append(session_id)
        requeue.seal(session_id)
        report.seals.append(session_id)


def _finish_stop(rt: Runtime, session_id: str, requeue: Requeue) -> bool:
    """Finish a stop that moved the session to STOPPING but never fixed its chunk count."""
    finish_stop(rt, session_id, requeue.chunk)
    return True


def _requeue_anchors(
    rt: Runtime, requeue: Requeue, before: str, now: str, report: SweepReport
) -> None:
    for session in rt.meta.unanchored_sessions(before, limit=BATCH):
        session_id = session["session_id"]
        if not rt.meta.claim_session(session_id, SessionState.STOPPED, before, now):
            continue
        requeue.anchor(session_id)
        report.anchors.append(session_id)
