"""Bad input gets a 4xx with a JSON body naming the problem, never a 500."""

from __future__ import annotations

import http.client
import json
from typing import Any

import httpx
import pytest

from cli.client import Client

UNKNOWN = "0" * 32


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["message"], body
    return body


def test_unknown_session_is_404(client: Client) -> None:
    body = _error(client.http.get(f"/api/v1/sessions/{UNKNOWN}"), 404)
    assert UNKNOWN in body["message"]


@pytest.mark.parametrize("bad", ["xyz", "A" * 32, "0" * 31, "g" * 32, "..%5C..%5Cetc"])
def test_malformed_session_id_is_400(client: Client, bad: str) -> None:
    body = _error(client.http.get(f"/api/v1/sessions/{bad}"), 400)
    assert "32 lowercase hex" in body["message"]


def test_create_with_malformed_json_is_400(client: Client) -> None:
    response = client.http.post(
        "/api/v1/sessions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    _error(response, 400)


def test_appending_before_start_is_409_and_stores_nothing(client: Client) -> None:
    sid = client.create()["session_id"]
    body = _error(client.http.post(f"/api/v1/sessions/{sid}/data", content=b"abc"), 409)
    assert "CREATED" in body["message"]
    assert client.status(sid)["bytes_received"] == 0


def test_invalid_transition_is_409_naming_allowed_triggers(client: Client) -> None:
    sid = client.create()["session_id"]
    body = _error(client.http.post(f"/api/v1/sessions/{sid}/resume"), 409)
    assert "RESUME" in body["message"] and "CREATED" in body["message"]


def test_proof_of_unsealed_session_is_409_and_bad_index_400(client: Client) -> None:
    sid = client.create()["session_id"]
    _error(client.http.get(f"/api/v1/sessions/{sid}/chunks/0/proof"), 409)
    _error(client.http.get(f"/api/v1/sessions/{sid}/chunks/-1/proof"), 400)


def test_declared_oversized_upload_is_413_before_reading(client: Client) -> None:
    sid = client.create()["session_id"]
    url = client.http.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    conn.putrequest("PUT", f"/api/v1/sessions/{sid}/recording")
    conn.putheader("Authorization", client.http.headers["Authorization"])
    conn.putheader("Content-Length", str(1 << 50))
    conn.endheaders(b"x" * 1024)
    response = conn.getresponse()
    assert response.status == 413
    assert "exceeds" in json.loads(response.read())["message"]
    conn.close()
    assert client.status(sid)["state"] == "CREATED"


def test_unknown_route_is_json_404(client: Client) -> None:
    _error(client.http.get("/api/v1/nope"), 404)
