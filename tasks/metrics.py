"""Per-stage counters kept in Redis, so every worker process adds to one total."""

from __future__ import annotations

from typing import Any

import redis.exceptions
from celery.utils.log import get_logger

from lucid.settings import STAGES

log = get_logger(__name__)

# Redis being away (killed, restarting, a network blip): the kinds of errors a counter
# update may meet that say nothing about the task it measures.
REDIS_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)

SECONDS_KEY = "lucid:stage_seconds"
COUNT_KEY = "lucid:stage_tasks"
# Per session too, for its statistics; kept a while after its last task.
SESSION_SECONDS_KEY = "lucid:session_stage_seconds:{}"
SESSION_COUNT_KEY = "lucid:session_stage_tasks:{}"
SESSION_KEYS_TTL_S = 90 * 24 * 3600


def record_stage_time(app: Any, stage: str, seconds: float, session_id: str | None = None) -> None:
    """Add one finished task of `stage` and its duration to the shared counters (and to
    the session's, when known).

    The counters are a measurement, not part of the work: with Redis away the sample is
    dropped (and logged) rather than failing a task that already did its job."""
    try:
        pipe = app.backend.client.pipeline(transaction=False)
        pipe.hincrbyfloat(SECONDS_KEY, stage, seconds)
        pipe.hincrby(COUNT_KEY, stage, 1)
        if session_id:
            for key in (SESSION_SECONDS_KEY, SESSION_COUNT_KEY):
                pipe.expire(key.format(session_id), SESSION_KEYS_TTL_S)
            pipe.hincrbyfloat(SESSION_SECONDS_KEY.format(session_id), stage, seconds)
            pipe.hincrby(SESSION_COUNT_KEY.format(session_id), stage, 1)
        pipe.execute()
    except REDIS_UNAVAILABLE as exc:
        log.warning("event=stage_time_dropped stage=%s error=%r", stage, exc)


def stage_stats(app: Any) -> dict[str, dict[str, float]]:
    """{stage: {"tasks": n, "seconds": s, "queued": depth}} for every stage queue."""
    client = app.backend.client
    broker = app.connection_for_write()
    seconds = client.hgetall(SECONDS_KEY)
    counts = client.hgetall(COUNT_KEY)
    out: dict[str, dict[str, float]] = {}
    with broker.channel() as channel:
        for stage in STAGES:
            try:
                depth = channel.queue_declare(stage, passive=True).message_count
            except Exception:
                depth = 0
            out[stage] = {
                "tasks": float(counts.get(stage.encode(), 0)),
                "seconds": float(seconds.get(stage.encode(), 0.0)),
                "queued": float(depth),
            }
    broker.release()
    return out


def session_stage_times(app: Any, session_id: str) -> dict[str, dict[str, float]]:
    """{stage: {"tasks": n, "seconds": s}} of the tasks run for one session."""
    client = app.backend.client
    seconds = client.hgetall(SESSION_SECONDS_KEY.format(session_id))
    counts = client.hgetall(SESSION_COUNT_KEY.format(session_id))
    return {
        stage: {
            "tasks": float(counts.get(stage.encode(), 0)),
            "seconds": round(float(seconds.get(stage.encode(), 0.0)), 6),
        }
        for stage in STAGES
    }
