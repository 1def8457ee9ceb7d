"""Statistics: one session's (bytes per stage, ratio, times, throughput, latencies) and
the deployment's (sessions by state, what is stored, queue depth and workers per stage).

The deployment's live at /api/v1/statistics and, as the seeds name it, at
/api/v1/sessions/statistics: a literal path segment, which routing always prefers to the
`<session_id>` of GET /api/v1/sessions/<session_id>, so `statistics` is never taken for
a session id (session ids are 32 hex digits, which the word is not either).
"""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import jsonify
from flask.typing import ResponseReturnValue

from api import runtime
from api.auth import owned_session, require
from lucid.pipeline.statistics import session_statistics, system_statistics
from lucid.settings import STAGES
from tasks.app import app as celery_app
from tasks.metrics import session_stage_times, stage_stats

bp = APIBlueprint("statistics", __name__, url_prefix="/api/v1", tag="Statistics")


@bp.get("/sessions/<session_id>/statistics")
@bp.doc(
    summary="A session's statistics",
    description="bytes: received, plaintext, compressed, ciphertext; compression_ratio "
    "(plaintext/compressed); stages: tasks and seconds per stage; recording_seconds, "
    "stop_to_seal_seconds, seal_to_anchor_seconds, throughput_bytes_per_second (plaintext "
    "from the start of recording to the seal).",
    responses={200: "The statistics", 404: "No such session"},
)
@require("read")
def session(session_id: str) -> ResponseReturnValue:
    owned_session(session_id)
    times = session_stage_times(celery_app, session_id)
    return jsonify(session_statistics(runtime(), session_id, times))


@bp.get("/statistics")
@bp.get("/sessions/statistics")
@bp.doc(
    summary="The deployment's statistics",
    description="sessions: how many in each state; stored: hashed chunks and their "
    "ciphertext bytes; stages: per queue its depth (queued), configured workers, and the "
    "tasks run and seconds spent since the counters began. Needs the admin scope: it "
    "counts every tenant's sessions.",
    responses={200: "The statistics", 403: "No admin scope"},
)
@require("admin")
def system() -> ResponseReturnValue:
    rt = runtime()
    workers = {stage: rt.settings.workers_for(stage) for stage in STAGES}
    return jsonify(system_statistics(rt, stage_stats(celery_app), workers))
