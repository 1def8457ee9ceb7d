"""Per-stage counters kept in Redis, so every worker process adds to one total."""

from __future__ import annotations

import contextlib
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

SECONDS_KEY = "stage_seconds"
COUNT_KEY = "stage_tasks"


def _key(app: Any, name: str) -> str:
    # One deployment's counters: "lucid:<name>", or "<prefix>.lucid:<name>" under QUEUE_PREFIX.
    return f"{app.conf.task_default_exchange}:{name}"


def stage_queue(app: Any, stage: str) -> str:
    """The broker queue of one stage, as celeryconfig routes it (QUEUE_PREFIX included)."""
    return str(app.conf.task_routes[f"lucid.{stage}"]["queue"])


# Per session too, for its statistics; kept a while after its last task.
SESSION_SECONDS_KEY = "session_stage_seconds:{}"
SESSION_COUNT_KEY = "session_stage_tasks:{}"
SESSION_KEYS_TTL_S = 90 * 24 * 3600


def record_stage_time(app: Any, stage: str, seconds: float, session_id: str | None = None) -> None:
    """Add one finished task of `stage` and its duration to the shared counters (and to
    the session's, when known).

    The counters are a measurement, not part of the work: with Redis away the sample is
    dropped (and logged) rather than failing a task that already did its job."""
    try:
        pipe = app.backend.client.pipeline(transaction=False)
        pipe.hincrbyfloat(_key(app, SECONDS_KEY), stage, seconds)
        pipe.hincrby(_key(app, COUNT_KEY), stage, 1)
        if session_id:
            session_seconds = _key(app, SESSION_SECONDS_KEY.format(session_id))
            session_count = _key(app, SESSION_COUNT_KEY.format(session_id))
            pipe.hincrbyfloat(session_seconds, stage, seconds)
            pipe.hincrby(session_count, stage, 1)
            for key in (session_seconds, session_count):
                pipe.expire(key, SESSION_KEYS_TTL_S)
        pipe.execute()
    except REDIS_UNAVAILABLE as exc:
        log.warning("event=stage_time_dropped stage=%s error=%r", stage, exc)


def queue_depths(app: Any) -> dict[str, int]:
    """{stage: messages waiting} for every stage queue, on Redis or RabbitMQ alike.

    A passive queue_declare asks the broker for the count without creating anything. A
    queue no worker has declared yet holds nothing: Redis answers that with a ChannelError,
    RabbitMQ with 404 NOT_FOUND, which also closes the channel, so each queue gets its own
    channel. A broker that cannot be reached raises (the caller answers 503): a depth of 0
    would claim an empty queue."""
    out: dict[str, int] = {}
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        for stage in STAGES:
            channel = conn.channel()
            try:
                out[stage] = int(channel.queue_declare(stage_queue(app, stage), passive=True)[1])
            except conn.channel_errors:
                out[stage] = 0
            finally:
                with contextlib.suppress(*conn.channel_errors, *conn.connection_errors):
                    channel.close()
    return out


def stage_stats(app: Any) -> dict[str, dict[str, float]]:
    """{stage: {"tasks": n, "seconds": s, "queued": depth}} for every stage queue."""
    client = app.backend.client
    seconds = client.hgetall(_key(app, SECONDS_KEY))
    counts = client.hgetall(_key(app, COUNT_KEY))
    depths = queue_depths(app)
    return {
        stage: {
            "tasks": float(counts.get(stage.encode(), 0)),
            "seconds": float(seconds.get(stage.encode(), 0.0)),
            "queued": float(depths[stage]),
        }
        for stage in STAGES
    }


def session_stage_times(app: Any, session_id: str) -> dict[str, dict[str, float]]:
    """{stage: {"tasks": n, "seconds": s}} of the tasks run for one session."""
    client = app.backend.client
    seconds = client.hgetall(_key(app, SESSION_SECONDS_KEY.format(session_id)))
    counts = client.hgetall(_key(app, SESSION_COUNT_KEY.format(session_id)))
    return {
        stage: {
            "tasks": float(counts.get(stage.encode(), 0)),
            "seconds": round(float(seconds.get(stage.encode(), 0.0)), 6),
        }
        for stage in STAGES
    }
