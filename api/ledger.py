"""The anchor ledger's signed head and the proof that it extends an older head.

The API holds no signing key (its role may not: lucid.crypto.roles): it serves the
checkpoint that the anchor side wrote after its last append, and the entries a client
needs to check consistency itself, read from the shared store (LEDGER_BACKEND=db).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from api import runtime
from lucid.errors import InvalidInput, NotFound

bp = Blueprint("ledger", __name__, url_prefix="/api/v1/ledger")


@bp.get("/checkpoint")
def checkpoint() -> ResponseReturnValue:
    """The latest signed checkpoint of the ledger head."""
    head = runtime().ledger.checkpoint()
    if head is None:
        raise NotFound("the ledger has no checkpoint yet (nothing anchored)")
    return jsonify(head.to_dict())


@bp.get("/consistency")
def consistency() -> ResponseReturnValue:
    """`?from=N[&start=K]`: the latest checkpoint and entries K (default N-1) .. size-1,
    which prove that the ledger extends a checkpoint of size N and still holds entry K
    as it was then (`lucid.integrity.ledger.verify_consistency`)."""
    raw, start = request.args.get("from", ""), request.args.get("start")
    if not raw.isdigit():
        raise InvalidInput(f"from: expected a checkpoint size (integer >= 0), got {raw!r}")
    if start is not None and not start.isdigit():
        raise InvalidInput(f"start: expected an entry seq (integer >= 0), got {start!r}")
    head, entries = runtime().ledger.consistency(int(raw), None if start is None else int(start))
    return jsonify(
        {"checkpoint": head.to_dict(), "entries": [entry.to_dict() for entry in entries]}
    )
