"""Flask application factory for the session API."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from lucid.runtime import Runtime, get_runtime


def create_app(runtime: Runtime | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the API app: defaults, then config, then blueprints."""
    app = Flask(__name__)
    app.config.from_mapping(JSON_SORT_KEYS=False)
    if test_config:
        app.config.update(test_config)
    rt = app.extensions["lucid"] = runtime or get_runtime()
    rt.meta.ensure_indexes()

    from api import (
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
    return app


def runtime() -> Runtime:
    """The runtime of the current app."""
    rt: Runtime = current_app.extensions["lucid"]
    return rt
