"""One session's pipeline: what each stage did, and pausing or resuming its chunks.

Pausing holds the session's chunks that have not started compressing (`lucid.pipeline.hold`);
other sessions' chunks on the same queues are not held up. Resuming hands them back.
"""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import jsonify
from flask.typing import ResponseReturnValue

from api import runtime
from api.auth import owned_session, principal, require
from lucid.pipeline.hold import pause_pipeline, resume_pipeline
from lucid.pipeline.statistics import pipeline_status
from tasks.app import app as celery_app
from tasks.canvas import enqueue_chunk, enqueue_seal
from tasks.metrics import session_stage_times

bp = APIBlueprint("pipeline", __name__, url_prefix="/api/v1/sessions", tag="Pipeline")

_STATUS_DOC = (
    "chunks: how many reached each stage; held: waiting for a resume; queued: on their "
    "way through the stages; failed: the session's error, if any; stages: tasks run and "
    "seconds spent per stage for this session; paused, paused_by, paused_at."
)


def _status(session_id: str) -> ResponseReturnValue:
    rt = runtime()
    return jsonify(pipeline_status(rt, session_id, session_stage_times(celery_app, session_id)))


@bp.get("/<session_id>/pipeline")
@bp.doc(summary="A session's pipeline", description=_STATUS_DOC,
        responses={200: "The pipeline status", 404: "No such session"})  # fmt: skip
@require("read")
def status(session_id: str) -> ResponseReturnValue:
    owned_session(session_id)
    return _status(session_id)


@bp.post("/<session_id>/pipeline/pause")
@bp.doc(
    summary="Pause a session's pipeline",
    description="Its chunks not yet compressing are held (not lost) until resumed; chunks "
    "of other sessions go on. GET session shows pipeline_paused.",
    responses={200: "The pipeline status", 404: "No such session", 410: "Deleted"},
)
@require("record")
def pause(session_id: str) -> ResponseReturnValue:
    owned_session(session_id)
    pause_pipeline(runtime(), session_id, by=principal().subject)
    return _status(session_id)


@bp.post("/<session_id>/pipeline/resume")
@bp.doc(
    summary="Resume a session's pipeline",
    description="Hands the held chunks back to the pipeline (and the seal, when the "
    "session was stopped meanwhile).",
    responses={200: "The pipeline status", 404: "No such session", 410: "Deleted"},
)
@require("record")
def resume(session_id: str) -> ResponseReturnValue:
    owned_session(session_id)
    resume_pipeline(
        runtime(), session_id, principal().subject, on_chunk=enqueue_chunk, on_seal=enqueue_seal
    )
    return _status(session_id)
