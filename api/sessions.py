"""Session endpoints: create, list, inspect, upload and control the lifecycle.

Views only call `lucid.sessions` and enqueue by id; the chord is published by a worker.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from api import runtime, validation
from lucid import sessions
from lucid.errors import TooLarge
from lucid.layout import check_session_id
from tasks.canvas import enqueue_chunk, enqueue_seal

bp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions")

_PUBLIC = (
    "session_id", "state", "created_at", "updated_at", "metadata", "chunk_size",
    "compression", "compression_level", "encryption", "bytes_received", "chunk_count",
    "merkle_root", "tree_size", "sealed_at", "anchor", "anchor_at", "error",
)  # fmt: skip


def public(doc: dict[str, Any], *, history: bool = False) -> dict[str, Any]:
    """The session as clients see it (no key material)."""
    out = {k: doc.get(k) for k in _PUBLIC}
    if history:
        out["history"] = doc.get("history", [])
    return out


def _status(session_id: str) -> dict[str, Any]:
    rt = runtime()
    out = public(rt.meta.get_session(session_id), history=True)
    out["chunks"] = rt.meta.stage_counts(session_id)
    return out


def _limit() -> int | None:
    """Reject a declared body larger than MAX_RECORDING_MB before reading a byte."""
    limit = int(runtime().settings.max_recording_mb * 1024 * 1024)
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"body of {request.content_length} bytes exceeds {limit} bytes")
    return limit


@bp.post("")
def create() -> ResponseReturnValue:
    metadata = validation.metadata(validation.json_object(request).get("metadata", {}))
    doc = sessions.create_session(runtime(), metadata)
    return jsonify(public(doc)), 201


@bp.get("")
def list_sessions() -> ResponseReturnValue:
    limit = validation.decimal("limit", request.args.get("limit"), 50, 1, 1000)
    skip = validation.decimal("skip", request.args.get("skip"), 0, 0, 2**31 - 1)
    docs = runtime().meta.list_sessions(limit=limit, skip=skip, state=request.args.get("state"))
    return jsonify({"sessions": [public(d) for d in docs], "limit": limit, "skip": skip})


@bp.get("/<session_id>")
def get(session_id: str) -> ResponseReturnValue:
    return jsonify(_status(check_session_id(session_id)))


@bp.put("/<session_id>/recording")
def put_recording(session_id: str) -> ResponseReturnValue:
    """A whole recording, streamed into chunks as it arrives; sealed at the end → 202."""
    check_session_id(session_id)
    limit = _limit()
    sessions.ingest_recording(runtime(), session_id, request.stream, enqueue_chunk, limit=limit)
    enqueue_seal(session_id)
    return jsonify(_status(session_id)), 202


@bp.post("/<session_id>/start")
def start(session_id: str) -> ResponseReturnValue:
    return jsonify(public(sessions.start(runtime(), check_session_id(session_id))))


@bp.post("/<session_id>/data")
def data(session_id: str) -> ResponseReturnValue:
    """Append bytes to an ACTIVE session; full chunks start through the pipeline at once."""
    check_session_id(session_id)
    doc = sessions.append(runtime(), session_id, request.stream, enqueue_chunk, limit=_limit())
    return jsonify(public(doc)), 202


@bp.post("/<session_id>/pause")
def pause(session_id: str) -> ResponseReturnValue:
    return jsonify(public(sessions.pause(runtime(), check_session_id(session_id))))


@bp.post("/<session_id>/resume")
def resume(session_id: str) -> ResponseReturnValue:
    return jsonify(public(sessions.resume(runtime(), check_session_id(session_id))))


@bp.post("/<session_id>/stop")
def stop(session_id: str) -> ResponseReturnValue:
    """Seal: cut the final chunk, fix the chunk count, publish the chord → 202."""
    doc = sessions.stop(runtime(), check_session_id(session_id), enqueue_chunk)
    if not doc.get("merkle_root"):
        enqueue_seal(session_id)
    return jsonify(_status(session_id)), 202


@bp.post("/<session_id>/recover")
def recover(session_id: str) -> ResponseReturnValue:
    return jsonify(public(sessions.recover(runtime(), check_session_id(session_id))))
