"""The anchor ledger's signed head and the proof that it extends an older head.

The API holds no signing key (its role may not: lucid.crypto.roles): it serves the
checkpoint that the anchor side wrote after its last append, and the entries a client
needs to check consistency itself, read from the shared store (LEDGER_BACKEND=db).
"""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import Response, request

from api import runtime, schemas
from api.auth import require
from api.openapi import error
from api.sessions import json_response
from api.validation import decimal
from lucid.errors import InvalidInput, NotFound

_MAX_SEQ = 2**53 - 1
bp = APIBlueprint("ledger", __name__, url_prefix="/api/v1/ledger", tag="ledger")


@bp.get("/checkpoint")
@require("read")
@bp.output({}, description="The signed head: size, root, time, signature")
@bp.doc(responses={404: error("Nothing anchored yet")})
def checkpoint() -> Response:
    """The latest signed checkpoint of the ledger head."""
    head = runtime().ledger.checkpoint()
    if head is None:
        raise NotFound("the ledger has no checkpoint yet (nothing anchored)")
    return json_response(head.to_dict())


@bp.get("/consistency")
@require("read")
@bp.output(schemas.Consistency, description="The latest checkpoint and the entries from K")
@bp.doc(
    responses={
        400: error("A bad `from` or `start`"),
        404: error("Nothing anchored yet"),
        409: error("`from`/`start` beyond the ledger"),
    },
    extensions={
        "x-parameters": [
            {"name": "from", "in": "query", "required": True,
             "schema": {"type": "integer", "minimum": 0},
             "description": "the size of the checkpoint kept earlier"},
            {"name": "start", "in": "query", "schema": {"type": "integer", "minimum": 0},
             "description": "the first entry to return (default from-1)"},
        ]
    },
)  # fmt: skip
def consistency() -> Response:
    """Prove the ledger extends an older checkpoint.

    `?from=N[&start=K]`: the latest checkpoint and entries K (default N-1) .. size-1,
    which prove that the ledger extends a checkpoint of size N and still holds entry K
    as it was then (`lucid.integrity.ledger.verify_consistency`)."""
    raw, start = request.args.get("from"), request.args.get("start")
    if raw is None:
        raise InvalidInput("from: expected a checkpoint size (integer >= 0), got none")
    size = decimal("from", raw, 0, 0, _MAX_SEQ)
    first = None if start is None else decimal("start", start, 0, 0, _MAX_SEQ)
    head, entries = runtime().ledger.consistency(size, first)
    return json_response(
        {"checkpoint": head.to_dict(), "entries": [entry.to_dict() for entry in entries]}
    )
