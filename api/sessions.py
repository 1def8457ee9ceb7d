"""Session endpoints: create, list, inspect, upload and control the lifecycle.

Views only call `lucid.pipeline.sessions` and enqueue by id; the chord is published by a worker.
"""

from __future__ import annotations

import contextlib
from typing import Any

from apiflask import APIBlueprint
from apiflask.fields import Integer
from flask import Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import UnsupportedMediaType

from api import listing, runtime, schemas, validation
from api.auth import owned_session, principal, require
from api.body import body_stream
from api.openapi import error, raw_body
from lucid.errors import InvalidInput, TooLarge
from lucid.lifecycle.limits import check_capacity
from lucid.pipeline import sessions
from tasks.canvas import enqueue_chunk, enqueue_seal

bp = APIBlueprint("sessions", __name__, url_prefix="/api/v1/sessions", tag="sessions")

_PUBLIC = (
    "session_id", "state", "created_at", "updated_at", "metadata", "chunk_size",
    "compression", "compression_level", "encryption", "bytes_received", "chunk_count",
    "merkle_root", "tree_size", "sealed_at", "anchor", "anchor_at", "error", "tenant",
    "pipeline_paused", "legal_hold",
)  # fmt: skip


def public(doc: dict[str, Any], *, history: bool = False) -> dict[str, Any]:
    """The session as clients see it (no key material)."""
    out = {k: doc.get(k) for k in _PUBLIC}
    if history:
        out["history"] = doc.get("history", [])
        out["access_log"] = doc.get("access_log", [])
    return out


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response as the view built it (apiflask's `@output` passes it through)."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _status(session_id: str) -> dict[str, Any]:
    rt = runtime()
    doc = rt.meta.get_session(session_id)
    out = public(doc, history=True)
    out["offset"], records = sessions.progress(rt, doc)
    out["chunks"] = rt.meta.stage_counts(session_id, records)
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


def _accepted(session_id: str) -> Response:
    status = _status(session_id)
    return json_response(status, 202, _offset_headers(status["offset"]))


def _limit() -> int | None:
    """Reject a declared body larger than MAX_RECORDING_MB before reading a byte."""
    limit = int(runtime().settings.max_recording_mb * 1024 * 1024)
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"body of {request.content_length} bytes exceeds {limit} bytes")
    return limit


# What the document says about the upload protocol's answers.
_OFFSET = {"Upload_Offset": "the committed length: where the next upload must start"}
_UPLOAD_ERRORS: dict[int | str, Any] = {
    409: error("The stated offset is not the committed length (body `offset`, header "
               "`Upload-Offset`), or the session is not ACTIVE; nothing was appended",
               **_OFFSET),
    413: error("The body exceeds MAX_RECORDING_MB"),
    415: error("A multipart form instead of the raw bytes"),
    507: error("The blob store is full; retry once space is freed"),
}  # fmt: skip
_CONTROL_ERRORS: dict[int | str, Any] = {
    409: error("The session's state does not allow this (says which do)")
}


def _by() -> str:
    return principal().subject


@bp.post("")
@require("record")
@bp.output(schemas.Session, status_code=201, description="The new session, in CREATED")
@bp.doc(
    responses={400: error("Not a JSON object, or bad metadata"), 413: error("Body over 64 KiB")},
    extensions={
        "x-request-body": {
            "required": False,
            "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"metadata": {
                    "type": "object", "description": "free-form JSON stored with it (≤ 8 KiB)"
                }},
            }}},
        }
    },
)  # fmt: skip
def create() -> Response:
    """Create a session for the caller's tenant."""
    metadata = validation.metadata(validation.json_object(request).get("metadata", {}))
    check_capacity(runtime())  # MAX_CONCURRENT_SESSIONS: 429 with Retry-After
    caller = principal()
    doc = sessions.create_session(runtime(), metadata, tenant=caller.tenant, by=caller.subject)
    return json_response(public(doc), 201)


_TIME = {"type": "string", "format": "date-time"}


@bp.get("")
@require("read")
@bp.output(
    schemas.SessionList,
    description="A page of the caller's tenant's sessions, filtered (state, created/updated "
    "ranges, metadata labels) and sorted, with a `next` link; `total` only when asked "
    "(see api.listing)",
)
@bp.doc(
    responses={400: error("An unknown or malformed query parameter (named)")},
    extensions={
        "x-parameters": [
            {"name": "state", "in": "query", "schema": {"type": "string"},
             "description": "states, comma-separated (or repeated)"},
            {"name": "created_after", "in": "query", "schema": _TIME},
            {"name": "created_before", "in": "query", "schema": _TIME},
            {"name": "updated_after", "in": "query", "schema": _TIME},
            {"name": "updated_before", "in": "query", "schema": _TIME},
            {"name": "label", "in": "query", "schema": {"type": "string"},
             "description": "key:value, or key (the label is present); repeatable"},
            {"name": "sort", "in": "query",
             "schema": {"type": "string", "enum": list(listing.SORTS)}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"},
             "description": "from the previous page's `next`"},
            {"name": "total", "in": "query", "schema": {"type": "boolean"},
             "description": "true: add `total`, a count of every match (seconds with "
             "100,000 sessions); false or absent: no `total` key"},
        ]
    },
)  # fmt: skip
def list_sessions() -> ResponseReturnValue:
    """List the caller's tenant's sessions."""
    return listing.list_sessions(public, _PUBLIC)


@bp.get("/<session_id>")
@require("read")
@bp.output(
    schemas.SessionStatus,
    description="The session with its history, stage counts and offset",
    headers={"Upload-Offset": Integer()},
)
@bp.doc(
    extensions={
        "x-head": {
            "summary": "The committed length (resume probe)",
            "responses": {"200": {"description": "`Upload-Offset` is the committed length",
                                  "headers": {"Upload-Offset": {"schema": {"type": "integer"}}}},
                          "404": {"description": "No such session (or another tenant's)"}},
        }
    }
)  # fmt: skip
def get(session_id: str) -> Response:
    """The session's status.

    `offset` (and, for HEAD too, `Upload-Offset`) is the committed length a resuming
    upload must start at."""
    owned_session(session_id)
    if request.method == "HEAD":  # the resume probe: no stage counts needed
        offset = sessions.committed_length(runtime(), session_id)
        return Response(status=200, headers=_offset_headers(offset))
    status = _status(session_id)
    return json_response(status, 200, _offset_headers(status["offset"]))


@bp.put("/<session_id>/recording")
@require("record")
@bp.output(schemas.SessionStatus, status_code=202, description="Stored and sealing")
@bp.doc(
    responses=_UPLOAD_ERRORS,
    extensions={"x-request-body": raw_body("The whole recording, streamed")},
)
def put_recording(session_id: str) -> Response:
    """Upload a whole recording at offset 0.

    Streamed into chunks as it arrives; sealed at the end → 202. On a session that already
    holds bytes: 409 with the offset, nothing appended."""
    owned_session(session_id)
    _raw_body()
    limit = _limit()
    stream = body_stream()
    try:
        sessions.ingest_recording(
            runtime(), session_id, stream, enqueue_chunk, limit=limit, by=_by()
        )
    finally:
        stream.close()
    enqueue_seal(session_id)
    return _accepted(session_id)


@bp.post("/<session_id>/start")
@require("record")
@bp.output(schemas.Session, description="ACTIVE: the session accepts data")
@bp.doc(responses=_CONTROL_ERRORS)
def start(session_id: str) -> Response:
    """Start a CREATED session."""
    owned_session(session_id)
    return json_response(public(sessions.start(runtime(), session_id, by=_by())))


@bp.post("/<session_id>/data")
@require("record")
@bp.output(
    schemas.SessionStatus,
    status_code=202,
    description="Appended; `Upload-Offset` is the new committed length",
    headers={"Upload-Offset": Integer()},
)
@bp.doc(
    responses={400: error("Missing or malformed Upload-Offset"), **_UPLOAD_ERRORS},
    extensions={
        "x-request-body": raw_body("The next bytes of the recording"),
        "x-parameters": [
            {"name": "Upload-Offset", "in": "header", "schema": {"type": "integer", "minimum": 0},
             "description": "where these bytes start (or `?offset=`)"},
            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        ],
    },
)  # fmt: skip
def data(session_id: str) -> Response:
    """Append bytes to an ACTIVE session.

    At the offset the client states (`Upload-Offset` or `?offset=`, required); full chunks
    start through the pipeline at once → 202 with the new `Upload-Offset`. A wrong offset
    → 409 with the committed one, nothing appended."""
    session = owned_session(session_id)
    _raw_body()
    offset = _stated_offset()
    stream = body_stream()
    try:
        doc = sessions.append(
            runtime(), session_id, stream, enqueue_chunk, offset=offset, limit=_limit(),
            doc=session,
        )  # fmt: skip
    finally:
        stream.close()
    # Not the full status: its stage counts and offset cost four more metadata reads on
    # every append, most of the metadata server's CPU for a live recorder's small pieces.
    committed = int(doc["offset"])
    return json_response(public(doc) | {"offset": committed}, 202, _offset_headers(committed))


@bp.post("/<session_id>/pause")
@require("record")
@bp.output(schemas.Session, description="PAUSED")
@bp.doc(responses=_CONTROL_ERRORS)
def pause(session_id: str) -> Response:
    """Pause an ACTIVE session."""
    owned_session(session_id)
    return json_response(public(sessions.pause(runtime(), session_id, by=_by())))


@bp.post("/<session_id>/resume")
@require("record")
@bp.output(schemas.Session, description="ACTIVE again")
@bp.doc(responses=_CONTROL_ERRORS)
def resume(session_id: str) -> Response:
    """Resume a PAUSED session."""
    owned_session(session_id)
    return json_response(public(sessions.resume(runtime(), session_id, by=_by())))


@bp.post("/<session_id>/stop")
@require("record")
@bp.output(schemas.SessionStatus, status_code=202, description="Stopped and sealing")
@bp.doc(responses=_CONTROL_ERRORS)
def stop(session_id: str) -> Response:
    """Stop and seal.

    Cuts the final chunk, fixes the chunk count, publishes the chord → 202."""
    owned_session(session_id)
    doc = sessions.stop(runtime(), session_id, enqueue_chunk, by=_by())
    if not doc.get("merkle_root"):
        enqueue_seal(session_id)
    return _accepted(session_id)


@bp.post("/<session_id>/recover")
@require("record")
@bp.output(schemas.Session, description="ACTIVE again, the error cleared")
@bp.doc(responses=_CONTROL_ERRORS)
def recover(session_id: str) -> Response:
    """Recover a session in ERROR."""
    owned_session(session_id)
    return json_response(public(sessions.recover(runtime(), session_id, by=_by())))
