"""Health and metrics endpoints."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from api import runtime
from tasks.app import app as celery_app
from tasks.metrics import stage_stats

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> ResponseReturnValue:
    """200 when the metadata store and the broker answer, 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        runtime().meta.ping()
        checks["metadata"] = "ok"
    except Exception as exc:
        checks["metadata"] = f"error: {exc}"
    try:
        celery_app.backend.client.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ok else "degraded", "checks": checks}), 200 if ok else 503


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


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus text: queue depth per stage (Flower's /metrics has none) and stage time."""
    registry = CollectorRegistry()
    registry.register(_StageCollector())  # type: ignore[arg-type]
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
