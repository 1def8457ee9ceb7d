"""One place that maps errors to HTTP statuses with a JSON body.

Our own errors map by class. A dependency's errors are mapped once, here at the boundary:
a metadata store, broker or Redis that does not answer is a 503 naming it, with
Retry-After; a full disk is a 507. Anything else is a programming error and stays a 500
(logged with its traceback): there is no catch-all handler that would hide it.
"""

from __future__ import annotations

import errno
from typing import Any

import kombu.exceptions
import pymongo.errors
import redis.exceptions
from apiflask import APIFlask
from apiflask.exceptions import HTTPError as APIFlaskHTTPError
from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from lucid import errors
from lucid.redaction import redact_paths

# Ordered: the first matching class wins (subclasses before their bases).
STATUS: tuple[tuple[type[errors.LucidError], int], ...] = (
    (errors.TooLarge, 413),
    (errors.InvalidInput, 400),
    (errors.NotFound, 404),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.DecryptionNotHere, 403),
    (errors.Gone, 410),
    (errors.TooManySessions, 429),
    (errors.Conflict, 409),
    (errors.IntegrityError, 409),
    (errors.InsufficientStorage, 507),
    (errors.TransientError, 503),
    (errors.AnchorError, 502),
    (errors.ConfigError, 500),
    (errors.KeyMaterialError, 500),
)

# The dependency each vendor's "could not reach it / it did not answer" errors stand for.
# pymongo's ConnectionFailure covers ServerSelectionTimeoutError, AutoReconnect and
# NetworkTimeout; kombu raises OperationalError when a publish gave up.
DEPENDENCIES: tuple[tuple[tuple[type[Exception], ...], str], ...] = (
    ((pymongo.errors.ConnectionFailure,), "metadata store"),
    ((kombu.exceptions.OperationalError,), "broker"),
    ((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError), "redis"),
)
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
RETRY_AFTER_S = 5


def status_for(exc: errors.LucidError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}


def dependency_error(exc: BaseException) -> errors.LucidError | None:
    """The Lucid error a dependency's exception stands for, or None if it is not one."""
    for classes, name in DEPENDENCIES:
        if isinstance(exc, classes):
            # The cause comes first; pymongo appends its whole topology description.
            cause = str(exc).split(", Topology Description:")[0][:300]
            return errors.DependencyUnavailable(name, f"{type(exc).__name__}: {cause}")
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return errors.InsufficientStorage(
            f"insufficient storage: disk full ({errno.errorcode[exc.errno]}); "
            "free space or raise the quota, then retry"
        )
    return None


def render(exc: errors.LucidError) -> Response:
    """The JSON response for one of our errors; 503s say when to retry."""
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    status = status_for(exc)
    if isinstance(exc, errors.IntegrityError):
        extra = {"session_id": exc.session_id, "chunk_index": exc.chunk_index}
    elif isinstance(exc, errors.DependencyUnavailable):
        extra = {"dependency": exc.dependency}
    elif isinstance(exc, errors.OffsetMismatch):
        # A resuming client continues from here (tus.io's Upload-Offset).
        extra = {"offset": exc.expected}
        headers = {"Upload-Offset": str(exc.expected), "Cache-Control": "no-store"}
    if isinstance(exc, errors.Unauthorized):
        # RFC 6750 §3: a 401 names the scheme the client should use.
        headers["WWW-Authenticate"] = 'Bearer realm="lucid"'
    if isinstance(exc, errors.TooManySessions):
        headers["Retry-After"] = str(exc.retry_after)
    elif status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    response = jsonify(body(exc.code, redact_paths(str(exc)), **extra))
    response.status_code = status
    response.headers.update(headers)
    return response


def register(app: Flask) -> None:
    if isinstance(app, APIFlask):
        # First: apiflask's error_processor also takes werkzeug's HTTPExceptions (dropping
        # their description); ours, registered below, takes them back.
        app.error_processor(_apiflask_error)  # type: ignore[arg-type]
    app.register_error_handler(errors.LucidError, render)

    def _dependency_error(exc: Exception) -> ResponseReturnValue:
        mapped = dependency_error(exc)
        if mapped is None:
            raise exc  # not a dependency failure: a 500 with its traceback in the log
        app.logger.warning(
            "event=dependency_failed path=%s error=%r", request.path, exc, exc_info=exc
        )
        return render(mapped)

    for classes, _ in DEPENDENCIES:
        for cls in classes:
            app.register_error_handler(cls, _dependency_error)
    app.register_error_handler(OSError, _dependency_error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "error").lower().replace(" ", "_")
        # Keep werkzeug's own headers: a 405 says which methods are allowed (`Allow`).
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return jsonify(body(code, exc.description or exc.name)), exc.code or 500, headers


def _field_messages(detail: Any, where: str = "") -> list[str]:
    """ "query.limit: Must be ..." lines from webargs' nested {location: {field: [msgs]}}."""
    if isinstance(detail, dict):
        return [
            line
            for key, value in detail.items()
            for line in _field_messages(value, f"{where}.{key}" if where else str(key))
        ]
    if isinstance(detail, list) and all(isinstance(item, str) for item in detail):
        return [f"{where}: {' '.join(detail)}" if where else " ".join(detail)]
    if isinstance(detail, list):
        return [line for item in detail for line in _field_messages(item, where)]
    return [f"{where}: {detail}" if where else str(detail)]


def _apiflask_error(exc: APIFlaskHTTPError) -> Response:
    """apiflask's own errors (request validation by `@bp.input`) in our format: a failed
    validation is a 400 naming each field, like every other bad input."""
    if exc.detail:
        lines = _field_messages(exc.detail)
        response = render(errors.InvalidInput("; ".join(lines)[:1000] or exc.message))
    else:
        message = exc.message or "error"
        response = jsonify(body(message.lower().replace(" ", "_"), message))
        response.status_code = exc.status_code
    response.headers.update(dict(exc.headers or {}))
    return response
