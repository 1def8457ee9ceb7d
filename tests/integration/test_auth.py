"""Access control on the live stack: for every endpoint group, no/forged/expired token →
401, another tenant → 404 (never 403), a missing scope → 403, the right scope → 2xx; the
listing shows only the caller's tenant; the history names who changed what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.client import Client
from cli.stack import Stack
from lucid.crypto.keys import load_token_signing_key
from lucid.crypto.tokens import SCOPES, issue_token
from lucid.settings import load_settings

SESSIONS = "/api/v1/sessions"
TENANT, OTHER = "acme", "globex"


@pytest.fixture(scope="module")
def signing_key(stack: Stack) -> Ed25519PrivateKey:
    return load_token_signing_key(load_settings(stack.env).keys_path)


def token(
    key: Ed25519PrivateKey,
    scopes: str | tuple[str, ...],
    *,
    tenant: str = TENANT,
    subject: str = "alice",
    ttl: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> dict[str, str]:
    signed = issue_token(key, subject=subject, tenant=tenant, scopes=scopes, ttl=ttl, now=now)
    return {"Authorization": f"Bearer {signed}"}


@dataclass(frozen=True)
class Endpoint:
    """One request, its scope and the success status; `ready` makes a session for it."""

    method: str
    path: str  # "{sid}" is replaced by the session `ready` returns
    scope: str
    ok: int
    ready: str = "created"  # the state the session must be in first
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


ENDPOINTS = [
    # record: create, upload, control own sessions
    Endpoint("POST", SESSIONS, "record", 201, ready="none"),
    Endpoint("POST", SESSIONS + "/{sid}/start", "record", 200),
    Endpoint("POST", SESSIONS + "/{sid}/data", "record", 202, "active", b"abc",
             (("Upload-Offset", "0"), ("Content-Type", "application/octet-stream"))),
    Endpoint("PUT", SESSIONS + "/{sid}/recording", "record", 202, "created", b"x" * 1000,
             (("Content-Type", "application/octet-stream"),)),
    Endpoint("POST", SESSIONS + "/{sid}/pause", "record", 200, "active"),
    Endpoint("POST", SESSIONS + "/{sid}/resume", "record", 200, "paused"),
    Endpoint("POST", SESSIONS + "/{sid}/stop", "record", 202, "active"),
    # read: status, proofs, verify
    Endpoint("GET", SESSIONS, "read", 200, ready="none"),
    Endpoint("GET", SESSIONS + "/{sid}", "read", 200),
    Endpoint("HEAD", SESSIONS + "/{sid}", "read", 200),
    Endpoint("GET", SESSIONS + "/{sid}/chunks", "read", 200, "sealed"),
    Endpoint("GET", SESSIONS + "/{sid}/chunks/0/proof", "read", 200, "sealed"),
    Endpoint("GET", SESSIONS + "/{sid}/verify", "read", 200, "sealed"),
    Endpoint("GET", "/api/v1/ledger/checkpoint", "read", 200, ready="none"),
    Endpoint("PUT", SESSIONS + "/{sid}", "record", 200, "created", b'{"metadata": {"a": 1}}',
             (("Content-Type", "application/json"),)),
    Endpoint("POST", SESSIONS + "/{sid}/pipeline/pause", "record", 200, "active"),
    Endpoint("POST", SESSIONS + "/{sid}/pipeline/resume", "record", 200, "active"),
    Endpoint("GET", SESSIONS + "/{sid}/chunks/0", "read", 200, "sealed"),
    Endpoint("GET", SESSIONS + "/{sid}/pipeline", "read", 200),
    Endpoint("GET", SESSIONS + "/{sid}/statistics", "read", 200, "sealed"),
    # download: decrypted bytes (and what an offline restore needs)
    Endpoint("GET", SESSIONS + "/{sid}/download", "download", 200, "sealed"),
    Endpoint("GET", SESSIONS + "/{sid}/chunks/0/download", "download", 200, "sealed"),
    Endpoint("GET", SESSIONS + "/{sid}/bundle", "download", 200, "sealed"),
    # admin: delete, system statistics
    Endpoint("DELETE", SESSIONS + "/{sid}", "admin", 200, "created"),
    Endpoint("GET", "/api/v1/statistics", "admin", 200, ready="none"),
]  # fmt: skip


@pytest.fixture(scope="module")
def owner(stack: Stack, signing_key: Ed25519PrivateKey) -> Client:
    """A client of tenant acme with every scope."""
    return Client(stack.api_url, timeout=120, token=_bare(token(signing_key, SCOPES)))


def _bare(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
def sealed(owner: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("auth") / "rec.bin"
    path.write_bytes(b"sealed recording " * 5000)
    sid = str(owner.create({"for": "auth"})["session_id"])
    owner.upload(sid, path)
    assert owner.wait(sid, timeout=120)["anchor"]["status"] == "confirmed"
    return sid


def _session(owner: Client, state: str, sealed: str) -> str:
    if state == "sealed":
        return sealed
    sid = str(owner.create()["session_id"])
    if state in ("active", "paused"):
        owner.start(sid)
    if state == "paused":
        owner.http.post(f"{SESSIONS}/{sid}/pause").raise_for_status()
    return sid


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_auth_matrix(
    stack: Stack,
    signing_key: Ed25519PrivateKey,
    owner: Client,
    sealed: str,
    endpoint: Endpoint,
) -> None:
    sid = _session(owner, endpoint.ready, sealed) if endpoint.ready != "none" else ""
    url = stack.api_url + endpoint.path.replace("{sid}", sid)

    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(
            endpoint.method,
            url,
            content=endpoint.body,
            headers={**dict(endpoint.headers), **headers},
            timeout=60,
        )

    past = datetime.now(UTC) - timedelta(hours=2)
    refused: dict[str, tuple[dict[str, str], int]] = {
        "no token": ({}, 401),
        "forged": (token(Ed25519PrivateKey.generate(), SCOPES), 401),
        "expired": (token(signing_key, SCOPES, now=past), 401),
        "not bearer": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        "wrong scope": (token(signing_key, tuple(s for s in SCOPES if s != endpoint.scope)), 403),
    }
    if sid:
        refused["other tenant"] = (token(signing_key, SCOPES, tenant=OTHER), 404)
    for case, (headers, status) in refused.items():
        response = call(headers)
        assert response.status_code == status, (case, response.text)
        if endpoint.method != "HEAD":
            assert response.json()["error"], case
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), case
    response = call(token(signing_key, endpoint.scope, subject="right-scope"))
    assert response.status_code == endpoint.ok, response.text


def test_listing_shows_only_the_callers_tenant(
    stack: Stack, signing_key: Ed25519PrivateKey, owner: Client
) -> None:
    mine = owner.create({"tenant": "acme"})["session_id"]
    other = Client(stack.api_url, token=_bare(token(signing_key, SCOPES, tenant=OTHER)))
    theirs = other.create({"tenant": "globex"})["session_id"]

    def listed(client: Client) -> set[str]:
        body = client.http.get(SESSIONS, params={"limit": 1000}).json()
        return {s["session_id"] for s in body["sessions"]}

    assert mine in listed(owner) and theirs not in listed(owner)
    assert theirs in listed(other) and mine not in listed(other)
    assert {s["tenant"] for s in owner.http.get(SESSIONS).json()["sessions"]} == {TENANT}


def test_history_and_access_log_name_the_tokens_subject(
    stack: Stack,
    signing_key: Ed25519PrivateKey,
    sealed: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    carol = Client(stack.api_url, token=_bare(token(signing_key, SCOPES, subject="carol")))
    sid = carol.create()["session_id"]
    path = tmp_path_factory.mktemp("history") / "rec.bin"
    path.write_bytes(b"carol's recording")
    carol.upload(sid, path)
    dave = Client(stack.api_url, token=_bare(token(signing_key, "download read", subject="dave")))
    carol.wait(sid, timeout=120)
    dave.download(sid, path.with_suffix(".out"))
    status = dave.status(sid)
    by_trigger = {entry["trigger"]: entry["by"] for entry in status["history"]}
    for trigger in ("START", "START_COMPLETE", "STOP"):
        assert by_trigger[trigger] == "carol", status["history"]
    assert by_trigger["STOP_COMPLETE"] is None  # the seal: the system, not a caller
    assert [(a["action"], a["by"]) for a in status["access_log"]] == [("download", "dave")]
