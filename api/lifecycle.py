"""Editing and deleting a session: PUT replaces its metadata (and, for an admin, the legal
hold); DELETE crypto-shreds it, leaving a tombstone (`lucid.lifecycle.shred`)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import jsonify, request
from flask.typing import ResponseReturnValue

from api import runtime, validation
from api.auth import owned_session, principal, require
from api.sessions import public
from lucid.errors import InvalidInput
from lucid.lifecycle.shred import check_not_destroyed, shred_session

bp = APIBlueprint("lifecycle", __name__, url_prefix="/api/v1/sessions", tag="Sessions")

EDITABLE = ("metadata", "legal_hold")
# What the tombstone shows besides the public fields: who ended the session, and when.
_END_OF_LIFE = (
    "legal_hold", "legal_hold_by", "legal_hold_at", "pipeline_paused", "destroyed_at",
    "destroyed_by",
)  # fmt: skip


def lifecycle_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The session as clients see it, with its hold and end-of-life fields."""
    return {**public(doc), **{k: doc.get(k) for k in _END_OF_LIFE}}


def _edits(body: dict[str, Any]) -> dict[str, Any]:
    """The editable fields of a PUT body; 400 naming every field that may not be edited."""
    refused = sorted(set(body) - set(EDITABLE))
    if refused:
        raise InvalidInput(
            f"fields {', '.join(refused)} cannot be edited (content, keys, root and state are "
            f"fixed); expected only {', '.join(EDITABLE)}"
        )
    edits: dict[str, Any] = {}
    if "metadata" in body:
        edits["metadata"] = validation.metadata(body["metadata"])
    if "legal_hold" in body:
        if not isinstance(body["legal_hold"], bool):
            raise InvalidInput(f"legal_hold: expected true or false, got {body['legal_hold']!r}")
        edits["legal_hold"] = body["legal_hold"]
    if not edits:
        raise InvalidInput(f"expected at least one of {', '.join(EDITABLE)}, got none")
    return edits


@bp.put("/<session_id>")
@bp.doc(
    summary="Replace a session's metadata or legal hold",
    description="Body: {metadata: {labels, description, owner, ...}, legal_hold: bool}. "
    "Only these are editable; any other field is refused with 400 naming it. Setting "
    "legal_hold needs the admin scope.",
    responses={200: "The session", 400: "A field that cannot be edited", 403: "No admin scope",
               404: "No such session", 410: "The session was deleted"},
)  # fmt: skip
@require("record")
def update(session_id: str) -> ResponseReturnValue:
    edits = _edits(validation.json_object(request))
    check_not_destroyed(owned_session(session_id))
    rt, caller = runtime(), principal()
    if "legal_hold" in edits:
        caller.require("admin")
    doc = None
    if "metadata" in edits:
        doc = rt.meta.replace_metadata(session_id, edits["metadata"])
    if "legal_hold" in edits:
        doc = rt.meta.set_legal_hold(session_id, edits["legal_hold"], by=caller.subject)
    return jsonify(lifecycle_view(doc or rt.meta.get_session(session_id)))


@bp.delete("/<session_id>")
@bp.doc(
    summary="Delete a session by crypto-shredding",
    description="CLEANUP, then the wrapped session key and every blob are destroyed, then "
    "DESTROYED. The tombstone (id, root, anchor, tree size, destroyed_at, destroyed_by) "
    "stays; downloads answer 410 afterwards. Refused with 409 while on legal hold.",
    responses={200: "The tombstone", 404: "No such session", 409: "On legal hold"},
)
@require("admin")
def delete(session_id: str) -> ResponseReturnValue:
    owned_session(session_id)
    return jsonify(lifecycle_view(shred_session(runtime(), session_id, by=principal().subject)))
