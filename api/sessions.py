"""Session endpoints: create, list, inspect, upload and control the lifecycle.

Views only call `lucid.pipeline.sessions` and enqueue by id; the chord is published by a worker.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import UnsupportedMediaType

from api import listing, runtime, validation
from lucid.errors import InvalidInput, TooLarge
from lucid.lifecycle.limits import check_capacity
from lucid.pipeline import sessions
from lucid.storage.layout import check_session_id
from tasks.canvas import enqueue_chunk, enqueue_seal

bp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions")

_PUBLIC = (
    "session_id", "state", "created_at", "updated_at", "metadata", "chunk_size",
    "compression", "compression_level", "encryption", "bytes_received", "chunk_count",
    "merkle_root", "tree_size", "sealed_at", "anchor", "anchor_at", "error",
    "pipeline_paused", "legal_hold",
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
    out["offset"] = sessions.committed_length(rt, session_id)
    return out


# The resumable-upload protocol (in the spirit of tus.io): a client states where its bytes
# start; the server appends only at the committed length, else 409 with the true offset.
OFFSET_HEADER = "Upload-Offset"


def _offset_headers(offset: int) -> dict[str, str]:
    return {OFFSET_HEADER: str(offset), "Cache-Control": "no-store"}


_DRAIN_LIMIT = 16 * 1024 * 1024


@bp.after_request
def _drain_refused_body(response: Response) -> Response:
    """Read what is left of a refused upload's body before answering.

    A server that answers while the client is still sending and then closes makes the
    client's TCP stack reset the connection, and the client sees a dropped connection
    instead of the 409 and its offset. Past the limit we answer anyway; the client's
    resume (HEAD) still finds the offset.
    """
    length = request.content_length
    if response.status_code >= 400 and length is not None and length <= _DRAIN_LIMIT:
        # A client that went away has nothing left to drain; its error is not ours.
        with contextlib.suppress(Exception):
            while request.stream.read(1 << 20):
                pass
    return response


def _stated_offset() -> int | None:
    """The offset the client says its bytes start at: `Upload-Offset` or `?offset=`."""
    raw = request.headers.get(OFFSET_HEADER, request.args.get("offset"))
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidInput(f"{OFFSET_HEADER} must be a non-negative integer, got {raw!r}")
    return int(raw)


def _raw_body() -> None:
    """Refuse form uploads: `curl -F file=@rec` would store the MIME boundaries too."""
    if request.mimetype.startswith("multipart/"):
        raise UnsupportedMediaType(
            f"expected the recording's raw bytes (Content-Type: application/octet-stream), "
            f"got {request.mimetype}; e.g. curl --data-binary @rec "
            f"-H 'Content-Type: application/octet-stream'"
        )


def _accepted(session_id: str) -> ResponseReturnValue:
    status = _status(session_id)
    return jsonify(status), 202, _offset_headers(status["offset"])


def _limit() -> int | None:
    """Reject a declared body larger than MAX_RECORDING_MB before reading a byte."""
    limit = int(runtime().settings.max_recording_mb * 1024 * 1024)
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"body of {request.content_length} bytes exceeds {limit} bytes")
    return limit


@bp.post("")
def create() -> ResponseReturnValue:
    metadata = validation.metadata(validation.json_object(request).get("metadata", {}))
    check_capacity(runtime())  # MAX_CONCURRENT_SESSIONS: 429 with Retry-After
    doc = sessions.create_session(runtime(), metadata)
    return jsonify(public(doc)), 201


@bp.get("")
def list_sessions() -> ResponseReturnValue:
    """Filters, sort, total and a cursor: see api.listing."""
    return listing.list_sessions(public)


@bp.get("/<session_id>")
def get(session_id: str) -> ResponseReturnValue:
    """The session's status; `offset` (and, for HEAD too, `Upload-Offset`) is the
    committed length a resuming upload must start at."""
    check_session_id(session_id)
    if request.method == "HEAD":  # the resume probe: no stage counts needed
        offset = sessions.committed_length(runtime(), session_id)
        return Response(status=200, headers=_offset_headers(offset))
    status = _status(session_id)
    return jsonify(status), 200, _offset_headers(status["offset"])


@bp.put("/<session_id>/recording")
def put_recording(session_id: str) -> ResponseReturnValue:
    """A whole recording at offset 0, streamed into chunks as it arrives; sealed at the end
    → 202. On a session that already holds bytes: 409 with the offset, nothing appended."""
    check_session_id(session_id)
    _raw_body()
    limit = _limit()
    sessions.ingest_recording(runtime(), session_id, request.stream, enqueue_chunk, limit=limit)
    enqueue_seal(session_id)
    return _accepted(session_id)


@bp.post("/<session_id>/start")
def start(session_id: str) -> ResponseReturnValue:
    return jsonify(public(sessions.start(runtime(), check_session_id(session_id))))


@bp.post("/<session_id>/data")
def data(session_id: str) -> ResponseReturnValue:
    """Append bytes to an ACTIVE session at the offset the client states (`Upload-Offset`
    or `?offset=`, required); full chunks start through the pipeline at once → 202 with the
    new `Upload-Offset`. A wrong offset → 409 with the committed one, nothing appended."""
    check_session_id(session_id)
    _raw_body()
    offset = _stated_offset()
    doc = sessions.append(
        runtime(), session_id, request.stream, enqueue_chunk, offset=offset, limit=_limit()
    )
    # Not the full status: its stage counts and offset cost four more metadata reads on
    # every append, most of the metadata server's CPU for a live recorder's small pieces.
    committed = int(doc["offset"])
    return jsonify(public(doc) | {"offset": committed}), 202, _offset_headers(committed)


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
    return _accepted(session_id)


@bp.post("/<session_id>/recover")
def recover(session_id: str) -> ResponseReturnValue:
    return jsonify(public(sessions.recover(runtime(), check_session_id(session_id))))
