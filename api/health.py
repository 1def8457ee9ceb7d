"""Health and metrics endpoints; both answer in bounded time whatever hangs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from apiflask import APIBlueprint
from flask import Response, jsonify
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from api import runtime, schemas
from api.auth import public
from api.errors import RETRY_AFTER_S
from api.openapi import error
from lucid.errors import DependencyUnavailable
from tasks.app import app as celery_app
from tasks.metrics import stage_stats

bp = APIBlueprint("health", __name__, tag="operations")

_redis_clients: dict[tuple[str, float], redis.Redis] = {}


class _Late(Exception):
    """A check that did not finish before its deadline."""


def _within(timeout_s: float, calls: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run each call in its own daemon thread and wait at most `timeout_s` for all of them.

    A call that raised maps to its exception, one still running to `_Late`. A hung
    dependency therefore costs the caller `timeout_s`, never longer; its thread ends when
    the client's own socket timeout fires.
    """
    results: dict[str, Any] = {name: _Late() for name in calls}

    def run(name: str, call: Callable[[], Any]) -> None:
        try:
            results[name] = call()
        except Exception as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=run, args=item, name=f"health-{item[0]}", daemon=True)
        for item in calls.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return dict(results)


def _ping_broker() -> None:
    """Connect to the configured broker (Redis or RabbitMQ alike) through kombu."""
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


def _ping_redis(url: str, timeout_s: float) -> None:
    client = _redis_clients.get((url, timeout_s))
    if client is None:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        _redis_clients[(url, timeout_s)] = client
    client.ping()


def _describe(result: Any, timeout_s: float) -> str:
    if isinstance(result, _Late):
        return f"error: no answer within {timeout_s:g} s"
    if isinstance(result, Exception):
        return f"error: {type(result).__name__}: {result}"
    return "ok"


_DEGRADED: Any = {
    "description": "A dependency does not answer (named in `checks`)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
}


@bp.get("/health")
@public
@bp.output(schemas.Health, description="Every dependency answers")
@bp.doc(responses={503: _DEGRADED})
def health() -> Response:
    """Health of the API and its dependencies.

    200 when the metadata store, the broker and Redis answer, 503 naming the ones that
    do not; answers within HEALTH_TIMEOUT_SECONDS whatever hangs."""
    rt = runtime()
    settings = rt.settings
    timeout_s = settings.health_timeout_s
    redis_url = str(celery_app.conf.result_backend)
    meta = rt.meta  # built here, in the request, so the check's thread only pings
    results = _within(
        timeout_s,
        {
            "metadata": meta.ping,
            "broker": _ping_broker,
            "redis": lambda: _ping_redis(redis_url, timeout_s),
        },
    )
    checks = {name: _describe(result, timeout_s) for name, result in results.items()}
    ok = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ok" if ok else "degraded", "checks": checks})
    response.status_code = 200 if ok else 503
    if not ok:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


class _StageCollector:
    def collect(self):  # type: ignore[no-untyped-def]
        stats = stage_stats(celery_app)
        depth = GaugeMetricFamily(
            "lucid_queue_depth", "Messages waiting per stage queue", labels=["stage"]
        )
        tasks = GaugeMetricFamily(
            "lucid_stage_tasks_total", "Finished tasks per stage", labels=["stage"]
        )
        secs = GaugeMetricFamily(
            "lucid_stage_seconds_total", "Task seconds per stage", labels=["stage"]
        )
        for stage, s in stats.items():
            depth.add_metric([stage], s["queued"])
            tasks.add_metric([stage], s["tasks"])
            secs.add_metric([stage], s["seconds"])
        yield from (depth, tasks, secs)


def _render_metrics() -> bytes:
    registry = CollectorRegistry()
    registry.register(_StageCollector())  # type: ignore[arg-type]
    return bytes(generate_latest(registry))


@bp.get("/metrics")
@public
@bp.doc(
    responses={
        200: {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        503: error("Redis or the broker does not answer"),
    }
)
def metrics() -> ResponseReturnValue:
    """Prometheus metrics.

    Prometheus text: queue depth per stage (Flower's /metrics has none) and stage time.

    Read from Redis and the broker within HEALTH_TIMEOUT_SECONDS; 503 naming them if not.
    """
    timeout_s = runtime().settings.health_timeout_s
    result = _within(timeout_s, {"metrics": _render_metrics})["metrics"]
    if isinstance(result, _Late):
        raise DependencyUnavailable("redis or broker", f"no answer within {timeout_s:g} s")
    if isinstance(result, Exception):
        raise result  # mapped in api/errors.py like any dependency error
    return Response(result, mimetype="text/plain; version=0.0.4")
