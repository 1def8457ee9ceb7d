"""Bad input gets a 4xx with a JSON body naming the problem, never a 500 (issue 9.6),
and a refused body never costs the client its next request on the connection."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import httpx
import pytest

from cli.client import Client

SESSIONS = "/api/v1/sessions"


def _strict_json(text: str) -> Any:
    """Parse as strict JSON: NaN and Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = _strict_json(response.text)
    assert body["error"] and body["message"], body
    return body


def _create(client: Client, raw: str) -> httpx.Response:
    return client.http.post(SESSIONS, content=raw, headers={"Content-Type": "application/json"})


def test_json_nested_100000_deep_is_refused(client: Client) -> None:
    raw = '{"metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = _create(client, raw)
    assert response.status_code in (400, 413), response.text
    _error(response, response.status_code)


def test_json_nested_deeper_than_the_parser_goes_is_400(client: Client) -> None:
    raw = '{"metadata": ' + "[" * 20_000 + "]" * 20_000 + "}"
    assert "deep" in _error(_create(client, raw))["message"]


def test_metadata_nested_deeper_than_allowed_is_400(client: Client) -> None:
    raw = '{"metadata": {"a": ' + "[" * 200 + "]" * 200 + "}}"
    assert "deep" in _error(_create(client, raw))["message"]


@pytest.mark.parametrize(
    "metadata",
    [
        {"a\u0000b": 1},
        {"$where": "1"},
        {"a.b": 1},
        {"ok": {"$gt": 1}},
        {"ok": [{"x.y": 1}]},
        {"": 1},
    ],
    ids=["nul", "dollar", "dot", "nested-dollar", "dot-in-list", "empty"],
)
def test_metadata_key_mongo_cannot_store_is_400(client: Client, metadata: dict[str, Any]) -> None:
    body = _error(client.http.post(SESSIONS, json={"metadata": metadata}))
    assert "key" in body["message"]


@pytest.mark.parametrize("number", [2**64 + 1, 2**63, -(2**63) - 1])
def test_metadata_integer_outside_64_bits_is_400(client: Client, number: int) -> None:
    body = _error(_create(client, f'{{"metadata": {{"n": {number}}}}}'))
    assert "64-bit" in body["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_is_400_and_listing_stays_strict_json(
    client: Client, constant: str
) -> None:
    body = _error(_create(client, f'{{"metadata": {{"x": {constant}}}}}'))
    assert constant in body["message"]
    listing = client.http.get(SESSIONS, params={"limit": 1000})
    assert listing.status_code == 200
    _strict_json(listing.text)


def test_metadata_string_with_lone_surrogate_is_400(client: Client) -> None:
    _error(_create(client, '{"metadata": {"x": "\\ud800"}}'))


def test_integer_at_the_64_bit_edge_and_unicode_metadata_are_kept(client: Client) -> None:
    metadata = {"n": 2**63 - 1, "m": -(2**63), "f": 1.5, "name": "süß ✓", "l": [1, None]}
    created = client.create(metadata)
    assert client.status(created["session_id"])["metadata"] == metadata


@pytest.mark.parametrize(
    "params",
    [
        {"skip": str(2**63)},
        {"skip": "9" * 1000},
        {"limit": "²"},
        {"skip": "1_0"},
        {"limit": " 5"},
        {"limit": "0"},
        {"state": "nope\u0000"},
    ],
)
def test_list_with_bad_paging_is_400(client: Client, params: dict[str, str]) -> None:
    _error(client.http.get(SESSIONS, params=params))


@pytest.mark.parametrize("index", ["²", "٣", "9" * 1000, str(2**63), "1e3", "-1"])
def test_proof_with_bad_chunk_index_is_400(client: Client, index: str) -> None:
    sid = client.create()["session_id"]
    body = _error(client.http.get(f"{SESSIONS}/{sid}/chunks/{index}/proof"))
    assert "chunk index" in body["message"]


def test_create_body_declared_larger_than_allowed_is_413(client: Client) -> None:
    url = client.http.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    conn.putrequest("POST", SESSIONS)
    conn.putheader("Authorization", client.http.headers["Authorization"])
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(1 << 40))
    conn.endheaders(b'{"metadata": {')
    response = conn.getresponse()
    assert response.status == 413
    assert response.getheader("Connection") == "close"
    conn.close()


def test_after_an_early_413_the_next_request_on_the_connection_is_answered(
    client: Client,
) -> None:
    sid = client.create()["session_id"]
    url = client.http.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    conn.putrequest("PUT", f"{SESSIONS}/{sid}/recording")
    conn.putheader("Authorization", client.http.headers["Authorization"])
    conn.putheader("Content-Length", str(1 << 50))
    conn.endheaders(b"x" * 1024)
    response = conn.getresponse()
    assert response.status == 413
    response.read()
    # The body was refused unread: the server says it closes, so the client reconnects
    # (http.client does that on its own) instead of sending into a dead connection.
    assert response.getheader("Connection") == "close"
    started = time.monotonic()
    conn.request(
        "GET", f"{SESSIONS}/{sid}", headers={"Authorization": client.http.headers["Authorization"]}
    )
    follow = conn.getresponse()
    assert follow.status == 200
    assert json.loads(follow.read())["session_id"] == sid
    assert time.monotonic() - started < 2.0
    conn.close()


def test_keep_alive_is_kept_after_an_error_whose_body_was_read(client: Client) -> None:
    url = client.http.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    conn.request(
        "POST",
        SESSIONS,
        body=b"{not json",
        headers={
            "Content-Type": "application/json",
            "Authorization": client.http.headers["Authorization"],
        },
    )
    response = conn.getresponse()
    assert response.status == 400
    response.read()
    sock = conn.sock
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    assert conn.sock is sock  # the same connection served both
    conn.close()
