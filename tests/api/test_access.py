"""The app's access control and its OpenAPI document, in process (Flask's test client)
on a real metadata server: every route declares a scope, tokens are checked, tenants are
kept apart, and the document says all of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIBlueprint, APIFlask
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask.testing import FlaskClient

from api import auth, create_app
from lucid.crypto.keys import ensure_keys, load_token_signing_key
from lucid.crypto.tokens import SCOPES, issue_token
from lucid.errors import ConfigError
from lucid.runtime import Runtime
from lucid.settings import load_settings

SESSIONS = "/api/v1/sessions"


@pytest.fixture
def app(
    mongodb_url: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> APIFlask:
    db = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    env = {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": db,
        "REDIS_URL": redis_url,
        "LUCID_DATA_DIR": str(tmp_path),
    }
    settings = load_settings(env)
    ensure_keys(settings.keys_path)
    rt = Runtime(settings)
    rt.meta.sessions.drop()
    return create_app(rt)


@pytest.fixture
def signing_key(app: APIFlask) -> Ed25519PrivateKey:
    return load_token_signing_key(app.extensions["lucid"].settings.keys_path)


@pytest.fixture
def http(app: APIFlask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def bearer(key: Ed25519PrivateKey, tenant: str = "acme", scopes: str = "record read",
           subject: str = "alice", ttl: timedelta = timedelta(hours=1),
           now: datetime | None = None) -> dict[str, str]:  # fmt: skip
    token = issue_token(key, subject=subject, tenant=tenant, scopes=scopes, ttl=ttl, now=now)
    return {"Authorization": f"Bearer {token}"}


def test_document_is_openapi_3_1_with_bearer_scheme_on_every_operation(
    http: FlaskClient,
) -> None:
    spec: dict[str, Any] = http.get("/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operations = [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items()
    ]
    assert len(operations) >= 12
    for path, method, op in operations:
        assert "security" in op, f"{method} {path} has no security"
        if path in ("/health", "/metrics"):
            assert op["security"] == []
        else:
            assert op["security"][0]["bearerAuth"], f"{method} {path}"
            assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
    upload = spec["paths"]["/api/v1/sessions/{session_id}/data"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    download = spec["paths"]["/api/v1/sessions/{session_id}/download"]["get"]
    assert "application/octet-stream" in download["responses"]["200"]["content"]
    assert download["security"] == [{"bearerAuth": ["download"]}]
    assert "head" in spec["paths"]["/api/v1/sessions/{session_id}"]
    assert http.get("/docs").status_code == 200


def test_a_route_without_a_declared_scope_refuses_the_app() -> None:
    app = APIFlask(__name__)
    bp = APIBlueprint("loose", __name__)

    @bp.get("/loose")
    def loose() -> str:
        return "open"

    app.register_blueprint(bp)
    with pytest.raises(ConfigError, match=r"/loose \(loose.loose\)"):
        auth.check_declared(app)


def test_no_token_forged_or_expired_is_401_with_our_error_body(
    http: FlaskClient, signing_key: Ed25519PrivateKey
) -> None:
    forged = bearer(Ed25519PrivateKey.generate())
    expired = bearer(signing_key, now=datetime.now(UTC) - timedelta(hours=2))
    for headers in ({}, forged, expired, {"Authorization": "Basic dXNlcjpwdw=="}):
        response = http.get(SESSIONS, headers=headers)
        assert response.status_code == 401, headers
        assert response.get_json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_scope_is_403_and_another_tenants_session_is_404(
    http: FlaskClient, signing_key: Ed25519PrivateKey
) -> None:
    alice = bearer(signing_key, tenant="acme", scopes="record read")
    created = http.post(SESSIONS, json={"metadata": {"n": 1}}, headers=alice)
    assert created.status_code == 201, created.get_json()
    sid = created.get_json()["session_id"]
    assert created.get_json()["tenant"] == "acme"
    reader = bearer(signing_key, tenant="acme", scopes="read", subject="reader")
    assert http.post(f"{SESSIONS}/{sid}/start", headers=reader).status_code == 403
    assert http.get(f"{SESSIONS}/{sid}", headers=reader).status_code == 200
    other = bearer(signing_key, tenant="globex", scopes=" ".join(SCOPES))
    for method, path in (("GET", ""), ("HEAD", ""), ("POST", "/start"), ("GET", "/chunks")):
        response = http.open(f"{SESSIONS}/{sid}{path}", method=method, headers=other)
        assert response.status_code == 404, (method, path)
    assert http.get(SESSIONS, headers=other).get_json()["sessions"] == []
    listed = http.get(SESSIONS, headers=reader).get_json()["sessions"]
    assert [s["session_id"] for s in listed] == [sid]


def test_history_records_the_subject_of_each_change(
    http: FlaskClient, signing_key: Ed25519PrivateKey
) -> None:
    alice = bearer(signing_key, subject="alice")
    sid = http.post(SESSIONS, headers=alice).get_json()["session_id"]
    assert http.post(f"{SESSIONS}/{sid}/start", headers=alice).status_code == 200
    bob = bearer(signing_key, subject="bob")
    assert http.post(f"{SESSIONS}/{sid}/pause", headers=bob).status_code == 200
    history = http.get(f"{SESSIONS}/{sid}", headers=bob).get_json()["history"]
    assert [(h["trigger"], h["by"]) for h in history] == [
        ("START", "alice"),
        ("START_COMPLETE", "alice"),
        ("PAUSE", "bob"),
        ("PAUSE_COMPLETE", "bob"),
    ]


def test_method_not_allowed_says_allow(http: FlaskClient) -> None:
    response = http.delete("/health")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.get_json()["error"] == "method_not_allowed"


def test_apiflask_validation_error_is_our_400_naming_the_field() -> None:
    from apiflask import Schema
    from apiflask.fields import Integer
    from apiflask.validators import Range

    from api import errors

    class Page(Schema):
        limit = Integer(validate=Range(1, 10))

    app = APIFlask(__name__, json_errors=False)
    app.config["VALIDATION_ERROR_STATUS_CODE"] = 400
    errors.register(app)

    @app.get("/page")
    @app.input(Page, location="query")
    def page(query_data: dict[str, int]) -> dict[str, int]:
        return query_data

    response = app.test_client().get("/page?limit=99")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_input"
    assert body["message"].startswith("query.limit: ")


def test_a_werkzeug_error_keeps_its_description(app: APIFlask) -> None:
    from werkzeug.exceptions import UnsupportedMediaType

    @app.get("/refuse")
    @auth.public
    def refuse() -> str:
        raise UnsupportedMediaType("expected application/octet-stream, got multipart/form-data")

    response = app.test_client().get("/refuse")
    assert response.status_code == 415
    assert "application/octet-stream" in response.get_json()["message"]
