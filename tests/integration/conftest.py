"""The whole stack on real parts: workers per stage queue and the API under gunicorn,
against the test session's redis-server and SecantusDB."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from cli.client import Client
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from lucid.runtime import Runtime
from lucid.settings import load_settings

CHUNK = 64 * 1024


def stack_env(redis_url: str, mongodb_url: str, db: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": db,
        "CHUNK_SIZE_MB": str(CHUNK / (1024 * 1024)),
        "COMPRESS_WORKERS": "2",
        "ENCRYPT_WORKERS": "2",
        "HASH_WORKERS": "1",
        "MERKLE_WORKERS": "1",
        "ANCHOR_WORKERS": "1",
        **extra,
    }


def wait_for_health(up: subprocess.Popen[str], port: int, timeout_s: float) -> None:
    """Poll the API of a `lucid up` process on `port` until /health answers 200, for at
    most `timeout_s`; fail with the process's stderr if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert up.poll() is None, up.communicate()[1]
        time.sleep(0.2)


@pytest.fixture(scope="session")
def stack(
    redis_url: str, mongodb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The embedded stack as `lucid up` starts it, with Flower, on free ports."""
    data_dir = tmp_path_factory.mktemp("stack")
    config = StackConfig(
        data_dir=data_dir,
        api_port=free_port(),
        flower_port=free_port(),
        # Small reconcile thresholds: test_reconcile waits for sweeps; for the other tests
        # they only add duplicates, which every stage must shrug off anyway.
        extra_env=stack_env(
            redis_url, mongodb_url, "lucid_it", RECONCILE_AFTER_S="3", RECONCILE_INTERVAL_S="1"
        ),
        loglevel="WARNING",
    )
    with Stack(config) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> Client:
    """A client with the stack's admin token (every scope of the default tenant)."""
    return Client(stack.api_url, timeout=120, token=stack.admin_token)


def cli_env(client: Client) -> dict[str, str]:
    """The environment a `lucid` command needs to act with `client`'s token."""
    return {"LUCID_TOKEN": client.http.headers["Authorization"].removeprefix("Bearer ")}


@pytest.fixture(scope="session")
def runtime(stack: Stack) -> Runtime:
    """The core wired to the same stores and data directory as the running stack."""
    return Runtime(load_settings(stack.env))
