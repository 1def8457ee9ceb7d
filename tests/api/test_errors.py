"""The one error mapping: each dependency's failures → 503 naming it with Retry-After, a
full disk → 507, anything else stays a 500 (and is logged), never hidden."""

from __future__ import annotations

import errno
import logging

import kombu.exceptions
import pymongo.errors
import pytest
import redis.exceptions
from flask import Flask

from api import errors


def _app(exc: BaseException) -> Flask:
    app = Flask(__name__)
    errors.register(app)

    @app.get("/")
    def fail() -> str:
        raise exc

    return app


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (pymongo.errors.ServerSelectionTimeoutError("no server"), "metadata store"),
        (pymongo.errors.AutoReconnect("lost"), "metadata store"),
        (pymongo.errors.NetworkTimeout("timed out"), "metadata store"),
        (kombu.exceptions.OperationalError("publish failed"), "broker"),
        (redis.exceptions.ConnectionError("refused"), "redis"),
        (redis.exceptions.TimeoutError("timed out"), "redis"),
    ],
)
def test_dependency_failure_is_503_naming_it(exc: Exception, dependency: str) -> None:
    response = _app(exc).test_client().get("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(errors.RETRY_AFTER_S)
    body = response.get_json()
    assert body["error"] == "dependency_unavailable"
    assert body["dependency"] == dependency
    assert body["message"].startswith(f"{dependency} unavailable: {type(exc).__name__}")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_is_507_without_the_path(code: int) -> None:
    exc = OSError(code, "No space left", "/srv/lucid-data/blobs/raw/x")
    response = _app(exc).test_client().get("/")
    assert response.status_code == 507
    body = response.get_json()
    assert body["error"] == "insufficient_storage"
    assert "disk full" in body["message"] and "/srv" not in body["message"]


@pytest.mark.parametrize(
    "exc", [PermissionError(errno.EACCES, "denied", "/x"), ValueError("a bug"), TimeoutError()]
)
def test_other_errors_stay_500_and_are_logged(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = _app(exc).test_client().get("/")
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_server_error"
    assert "Retry-After" not in response.headers
    assert any(r.exc_info and r.exc_info[1] is exc for r in caplog.records)
