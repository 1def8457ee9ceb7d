"""End of life: which sessions have outlived retention, which were abandoned, and a sweep.

* Retention. A session that ended (STOPPED, sealed or not, or ERROR) is crypto-shredded
  (`lucid.lifecycle.shred`) once it is older than RETENTION_DAYS — or its tenant's override in
  RETENTION_DAYS_BY_TENANT — counted from `created_at`, the one time every session has.
  A session on legal hold is never chosen.
* Abandonment. A session left in CREATED, ACTIVE or PAUSED with no change (`updated_at`:
  every committed chunk moves it) for ABANDONED_AFTER_H hours is ended: an ACTIVE or
  PAUSED one is stopped and sealed, so what was received is kept and proven; a CREATED
  one received nothing and cannot be stopped (the state machine has no CREATED → STOP),
  so it is shredded — unless on legal hold, when it is left alone.

`sweep` applies both through callbacks, so the periodic Celery task stays thin: it passes
a `stop_session` that stops the session and hands the final chunk to the pipeline. One
session failing (a LucidError) is logged and reported; the sweep goes on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lucid.crypto.tokens import DEFAULT_TENANT
from lucid.errors import InvalidInput, LucidError
from lucid.lifecycle.shred import shred_session
from lucid.lifecycle.states import SessionState
from lucid.runtime import Runtime

__all__ = [
    "ENDED_STATES",
    "IDLE_STATES",
    "SWEEPER",
    "SweepReport",
    "abandoned_sessions",
    "expired_sessions",
    "sweep",
]

log = logging.getLogger(__name__)

ENDED_STATES = [SessionState.STOPPED, SessionState.ERROR]
IDLE_STATES = [SessionState.CREATED, SessionState.ACTIVE, SessionState.PAUSED]
# The subject recorded in the history of the sessions the sweep ends.
SWEEPER = "system:retention"
Doc = dict[str, Any]
SessionAction = Callable[[str], object]


def _iso(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise InvalidInput(f"now: expected an aware datetime, got {moment!r}")
    # The store's own format, so the comparison is a plain string comparison.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def expired_sessions(rt: Runtime, now: datetime, *, limit: int = 0) -> list[Doc]:
    """Ended sessions past their tenant's retention and not on legal hold, oldest first."""
    s = rt.settings
    overrides = s.retention_days_by_tenant
    found: list[Doc] = []
    # Sessions without a tenant belong to DEFAULT_TENANT: `None` matches them in queries.
    for tenant, days in overrides.items():
        found += rt.meta.find_sessions(
            ENDED_STATES,
            created_before=_iso(now - timedelta(days=days)),
            tenant_in=[tenant, None] if tenant == DEFAULT_TENANT else [tenant],
            exclude_held=True,
            limit=limit,
        )
    others: list[str | None] = list(overrides)
    if DEFAULT_TENANT in overrides:
        others.append(None)
    found += rt.meta.find_sessions(
        ENDED_STATES,
        created_before=_iso(now - timedelta(days=s.retention_days)),
        tenant_not_in=others or None,
        exclude_held=True,
        limit=limit,
    )
    found.sort(key=lambda doc: doc["created_at"])
    return found[:limit] if limit else found


def abandoned_sessions(rt: Runtime, now: datetime, *, limit: int = 0) -> list[Doc]:
    """CREATED, ACTIVE or PAUSED sessions unchanged for ABANDONED_AFTER_H, idlest first."""
    idle_since = now - timedelta(hours=rt.settings.abandoned_after_h)
    return rt.meta.find_sessions(IDLE_STATES, updated_before=_iso(idle_since), limit=limit)


@dataclass
class SweepReport:
    """What one sweep did, by session id."""

    stopped: list[str] = field(default_factory=list)
    shredded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stopped": self.stopped,
            "shredded": self.shredded,
            "skipped": self.skipped,
            "failed": self.failed,
        }


def _apply(report: SweepReport, done: list[str], action: SessionAction, session_id: str) -> None:
    try:
        action(session_id)
    except LucidError as exc:
        log.warning("sweep failed session_id=%s error=%s", session_id, exc)
        report.failed[session_id] = f"{exc.code}: {exc}"
    else:
        done.append(session_id)


def sweep(
    rt: Runtime,
    now: datetime,
    stop_session: SessionAction,
    shred: SessionAction | None = None,
    *,
    limit: int = 100,
) -> SweepReport:
    """End abandoned sessions, then shred expired ones; at most `limit` of each per run.

    `stop_session(id)` stops and seals an ACTIVE or PAUSED session; `shred(id)` defaults
    to `shred_session` recorded as done by SWEEPER.
    """
    if shred is None:

        def shred(session_id: str) -> object:
            return shred_session(rt, session_id, by=SWEEPER)

    report = SweepReport()
    idle_cutoff = _iso(now - timedelta(hours=rt.settings.abandoned_after_h))
    for doc in abandoned_sessions(rt, now, limit=limit):
        sid = doc["session_id"]
        try:
            current = rt.meta.get_session(sid)
        except LucidError as exc:
            report.failed[sid] = f"{exc.code}: {exc}"
            continue
        if current["state"] not in IDLE_STATES or current["updated_at"] >= idle_cutoff:
            report.skipped[sid] = f"moved meanwhile ({current['state']})"
        elif current["state"] != SessionState.CREATED:
            _apply(report, report.stopped, stop_session, sid)
        elif current.get("legal_hold"):
            report.skipped[sid] = "on legal hold"
        else:
            _apply(report, report.shredded, shred, sid)
    for doc in expired_sessions(rt, now, limit=limit):
        _apply(report, report.shredded, shred, doc["session_id"])
    if report.stopped or report.shredded or report.failed:
        log.info(
            "sweep stopped=%d shredded=%d skipped=%d failed=%d",
            len(report.stopped),
            len(report.shredded),
            len(report.skipped),
            len(report.failed),
        )
    return report
