"""Flask application factory for the session API (apiflask: Flask plus its OpenAPI 3.1
document at /openapi.json and a docs page at /docs)."""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from flask import current_app

from lucid.runtime import Runtime, get_runtime


def create_app(
    runtime: Runtime | None = None, test_config: dict[str, Any] | None = None
) -> APIFlask:
    """Build the API app: defaults, then config, then blueprints."""
    from api import openapi

    app = APIFlask(__name__, title="Lucid session API", version="1", json_errors=False)
    app.config.from_mapping(
        JSON_SORT_KEYS=False,
        OPENAPI_VERSION="3.1.0",
        DESCRIPTION="Tamper-evident, encrypted storage for recorded remote-desktop sessions.",
        # Our error body everywhere (api/errors.py); a failed validation is a 400.
        HTTP_ERROR_SCHEMA=openapi.ERROR_SCHEMA,
        VALIDATION_ERROR_SCHEMA=openapi.ERROR_SCHEMA,
        VALIDATION_ERROR_STATUS_CODE=400,
        AUTO_404_RESPONSE=False,  # api/openapi.py adds it where an id can be unknown
        SECURITY_SCHEMES={"bearerAuth": openapi.SECURITY_SCHEME},
    )
    if test_config:
        app.config.update(test_config)
    rt = app.extensions["lucid"] = runtime or get_runtime()
    rt.meta.ensure_indexes()

    from api import (
        auth,
        bundle,
        chunk_access,
        chunks,
        errors,
        health,
        keepalive,
        ledger,
        lifecycle,
        pipeline,
        sessions,
        statistics,
    )

    errors.register(app)
    keepalive.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(chunks.bp)
    app.register_blueprint(ledger.bp)
    app.register_blueprint(bundle.bp)
    app.register_blueprint(lifecycle.bp)
    app.register_blueprint(chunk_access.bp)
    app.register_blueprint(pipeline.bp)
    app.register_blueprint(statistics.bp)

    app.spec_processor(lambda spec: openapi.finish(app, spec))  # a dict: SPEC_FORMAT json
    auth.check_declared(app)  # last: every route registered above declares its scope
    return app


def runtime() -> Runtime:
    """The runtime of the current app."""
    rt: Runtime = current_app.extensions["lucid"]
    return rt
