"""A bounded fuzz of the running API: whatever a client sends, the answer is never a 5xx,
and every error is a JSON body with `error` and `message` (issue 9)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.stack import Stack

SESSIONS = "/api/v1/sessions"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(["", "$gt", "a.b", "a\x00b", "\ud800", "ok", "n"]) | st.text(max_size=8)
metadata = st.dictionaries(keys, json_values, max_size=5)
# Kept short: gunicorn answers a request line over 4 KiB itself (414, not JSON).
segments = st.text(max_size=60) | st.sampled_from(["²", "٣", "-1", "0", "1e3", str(2**63)])
hex_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, (
        response.request.method,
        response.request.url,
        response.text,
    )
    if response.headers.get("content-type", "").startswith("application/json"):
        body = _strict(response.text)
    else:
        assert response.status_code < 400, response.text
        return
    if response.status_code >= 400:
        assert isinstance(body, dict), body
        if response.request.url.path.endswith("/verify") and response.status_code == 409:
            assert body["ok"] is False and body["failures"], body  # the report is the body
        else:
            assert body.get("error") and body.get("message"), body


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.api_url, timeout=60, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def session_ids(http: httpx.Client) -> list[str]:
    return [http.post(SESSIONS, json={}).json()["session_id"] for _ in range(2)]


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@FUZZ
@given(
    body=st.one_of(
        st.builds(lambda m: _dumps({"metadata": m}), metadata),
        json_values.map(_dumps),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.integers(1, 3000).map(lambda n: '{"metadata": ' + "[" * n + "]" * n + "}"),
    ),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", ""]
    ),
)
def test_create_never_answers_5xx(http: httpx.Client, body: str, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post(SESSIONS, content=body.encode("utf-8", "surrogatepass"), headers=headers)
    _check(response)
    if response.status_code == 201:
        stored = response.json()["metadata"]
        assert all(not isinstance(v, float) or math.isfinite(v) for v in stored.values())


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["limit", "skip", "state"]) | st.text(max_size=5),
        segments,
        max_size=3,
    )
)
def test_list_never_answers_5xx(http: httpx.Client, params: dict[str, str]) -> None:
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    response = http.get(f"{SESSIONS}?{query}")
    _check(response)


@FUZZ
@given(
    data=st.data(),
    endpoint=st.sampled_from(["", "/chunks", "/chunks/{i}/proof", "/verify", "/download"]),
)
def test_session_reads_never_answer_5xx(
    http: httpx.Client, session_ids: list[str], data: st.DataObject, endpoint: str
) -> None:
    sid = data.draw(st.sampled_from(session_ids) | hex_ids | segments)
    index = data.draw(segments | st.integers(0, 2**40).map(str))
    path = endpoint.replace("{i}", quote(index, safe=""))
    response = http.get(f"{SESSIONS}/{quote(sid, safe='')}{path}")
    _check(response)
