"""One place that maps errors to HTTP statuses with a JSON body."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from lucid import errors

# Ordered: the first matching class wins (subclasses before their bases).
STATUS: tuple[tuple[type[errors.LucidError], int], ...] = (
    (errors.TooLarge, 413),
    (errors.InvalidInput, 400),
    (errors.NotFound, 404),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.Gone, 410),
    (errors.TooManySessions, 429),
    (errors.Conflict, 409),
    (errors.IntegrityError, 409),
    (errors.TransientError, 503),
    (errors.AnchorError, 502),
    (errors.ConfigError, 500),
    (errors.KeyMaterialError, 500),
)


def status_for(exc: errors.LucidError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}


def register(app: Flask) -> None:
    @app.errorhandler(errors.LucidError)
    def _lucid_error(exc: errors.LucidError) -> ResponseReturnValue:
        extra: dict[str, Any] = {}
        if isinstance(exc, errors.IntegrityError):
            extra = {"session_id": exc.session_id, "chunk_index": exc.chunk_index}
        return jsonify(body(exc.code, str(exc), **extra)), status_for(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(body(code, exc.description or exc.name)), exc.code or 500
