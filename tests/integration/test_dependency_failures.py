"""A dependency that is down or hangs gets a clear, bounded answer: 503 with Retry-After
and a JSON body naming it; /health and /metrics answer within 2 s whatever hangs.

The API runs under gunicorn on a redis-server and a SecantusDB of its own, which the
tests stop (SIGSTOP: the process hangs with its sockets open) and kill.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.servers import ManagedProcess, free_port, start_redis, start_secantus
from tests.integration.apiserver import admin_headers, running_api

pytestmark = pytest.mark.slow

SID = "0123456789abcdef0123456789abcdef"


@contextmanager
def hung(proc: ManagedProcess) -> Iterator[None]:
    """The server stops answering but keeps its sockets open, as a hung host does."""
    os.killpg(proc.popen.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(proc.popen.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def deps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("deps")
    redis_proc, redis_url = start_redis(root / "redis")
    mongo_proc, mongo_url = start_secantus(root / "secantus")
    env = {
        "REDIS_URL": redis_url,
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": "deps",
        "CHUNK_SIZE_MB": "0.0625",
        "MONGODB_TIMEOUT_SECONDS": "1",
        "BROKER_TIMEOUT_SECONDS": "1",
        "HEALTH_TIMEOUT_SECONDS": "1",
    }
    try:
        with running_api(root / "api", env) as url:
            yield {"redis": redis_proc, "mongo": mongo_proc, "url": url, "env": env, "root": root}
    finally:
        redis_proc.stop()
        mongo_proc.stop()


@pytest.fixture
def http(deps: dict[str, Any]) -> Iterator[httpx.Client]:
    headers = admin_headers(deps["root"] / "api", deps["env"])
    with httpx.Client(base_url=deps["url"], timeout=60, headers=headers) as client:
        yield client


def _timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _unavailable(response: httpx.Response, dependency: str) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body: dict[str, Any] = response.json()
    assert body["error"] == "dependency_unavailable", body
    assert body["dependency"] == dependency, body
    assert dependency in body["message"], body
    return body


def _wait_healthy(http: httpx.Client, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.get("/health").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not healthy again: {http.get('/health').text}")


def test_health_reports_each_dependency(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"metadata": "ok", "broker": "ok", "redis": "ok"}


def test_health_and_metrics_answer_within_2s_when_redis_hangs(
    http: httpx.Client, deps: dict[str, Any]
) -> None:
    with hung(deps["redis"]):
        response, elapsed = _timed(lambda: http.get("/health"))
        assert elapsed < 2.0
        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert checks["metadata"] == "ok"
        assert checks["broker"].startswith("error") and checks["redis"].startswith("error")

        response, elapsed = _timed(lambda: http.get("/metrics"))
        assert elapsed < 2.0
        _unavailable(response, "redis or broker")
    _wait_healthy(http)
    assert http.get("/metrics").status_code == 200


def test_upload_while_broker_hangs_is_503_naming_the_broker(
    http: httpx.Client, deps: dict[str, Any]
) -> None:
    sid = http.post("/api/v1/sessions", json={}).json()["session_id"]
    with hung(deps["redis"]):
        response, elapsed = _timed(
            lambda: http.put(f"/api/v1/sessions/{sid}/recording", content=os.urandom(200_000))
        )
        assert elapsed < 15.0
        _unavailable(response, "broker")
    _wait_healthy(http)
    sid = http.post("/api/v1/sessions", json={}).json()["session_id"]
    response = http.put(f"/api/v1/sessions/{sid}/recording", content=os.urandom(100_000))
    assert response.status_code == 202, response.text


def test_requests_while_metadata_store_hangs_are_503_naming_it(
    http: httpx.Client, deps: dict[str, Any]
) -> None:
    with hung(deps["mongo"]):
        response, elapsed = _timed(lambda: http.get("/health"))
        assert elapsed < 2.0
        assert response.json()["checks"]["metadata"].startswith("error"), response.text
        for call in (
            lambda: http.get(f"/api/v1/sessions/{SID}"),
            lambda: http.get("/api/v1/sessions"),
            lambda: http.post("/api/v1/sessions", json={"metadata": {"a": 1}}),
        ):
            response, elapsed = _timed(call)
            assert elapsed < 8.0
            _unavailable(response, "metadata store")
    _wait_healthy(http)


def test_requests_while_redis_is_down_are_503_and_health_says_so(
    http: httpx.Client, deps: dict[str, Any]
) -> None:
    redis_proc: ManagedProcess = deps["redis"]
    port = int(deps["env"]["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    sid = http.post("/api/v1/sessions", json={}).json()["session_id"]
    redis_proc.stop()
    try:
        response, elapsed = _timed(lambda: http.get("/health"))
        assert elapsed < 2.0 and response.status_code == 503
        response = http.put(f"/api/v1/sessions/{sid}/recording", content=os.urandom(100_000))
        _unavailable(response, "broker")
    finally:
        deps["redis"], _ = start_redis(deps["root"] / "redis", port=port)
    _wait_healthy(http)
    # The API reconnects on its own: the next upload is enqueued.
    sid = http.post("/api/v1/sessions", json={}).json()["session_id"]
    response = http.put(f"/api/v1/sessions/{sid}/recording", content=os.urandom(100_000))
    assert response.status_code == 202, response.text


def test_requests_while_metadata_store_is_down_are_503(
    http: httpx.Client, deps: dict[str, Any]
) -> None:
    deps["mongo"].stop()  # the last test of the module: the store stays down
    response, elapsed = _timed(lambda: http.get(f"/api/v1/sessions/{SID}"))
    assert elapsed < 5.0
    _unavailable(response, "metadata store")
    response, elapsed = _timed(lambda: http.post("/api/v1/sessions", json={}))
    assert elapsed < 5.0
    _unavailable(response, "metadata store")


def _amqp_answers(port: int = 5672) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            sock.settimeout(2)
            return sock.recv(1)[:1] == b"\x01"  # a Connection.Start method frame
    except OSError:
        return False


@pytest.mark.parametrize("broker", ["dead", "rabbitmq"])
def test_health_checks_the_configured_broker(
    broker: str, redis_url: str, mongodb_url: str, tmp_path: Path
) -> None:
    if broker == "rabbitmq":
        if not _amqp_answers():
            pytest.skip("no RabbitMQ answering AMQP at 127.0.0.1:5672")
        url, expected = "amqp://guest:guest@127.0.0.1:5672//", "ok"
    else:
        url, expected = f"amqp://guest:guest@127.0.0.1:{free_port()}//", "error"
    env = {"REDIS_URL": redis_url, "MONGODB_URL": mongodb_url, "BROKER_URL": url}
    with running_api(tmp_path, env) as api:
        response, elapsed = _timed(lambda: httpx.get(api + "/health", timeout=30))
    assert elapsed < 2.0
    checks = response.json()["checks"]
    assert checks["broker"].startswith(expected), checks
    assert checks["metadata"] == "ok" and checks["redis"] == "ok", checks
    assert response.status_code == (200 if expected == "ok" else 503)
