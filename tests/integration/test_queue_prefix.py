"""QUEUE_PREFIX: two deployments on one broker never take each other's tasks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.client import Client
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from tests.integration.brokers import send_and_count
from tests.integration.conftest import CHUNK, stack_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefixed_stack(
    redis_url: str, mongodb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    prefix = f"pa{uuid.uuid4().hex[:6]}"
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("prefixed"),
        api_port=free_port(),
        flower_port=None,
        extra_env=stack_env(redis_url, mongodb_url, f"lucid_{prefix}", QUEUE_PREFIX=prefix),
        loglevel="WARNING",
    )
    with Stack(config) as running:
        yield running


def test_depth_counts_what_waits_on_redis_and_zero_for_a_queue_never_declared(
    redis_url: str,
) -> None:
    prefix = f"pd{uuid.uuid4().hex[:6]}"
    env = {"REDIS_URL": redis_url, "QUEUE_PREFIX": prefix}
    assert send_and_count(env) == dict.fromkeys(
        ("compress", "encrypt", "hash", "merkle", "anchor"), 0
    )
    assert send_and_count(env, sends=3)["compress"] == 3
    # the messages are on the one Redis list KEDA watches: the prefixed queue name (no
    # priority lists "<queue>\x06\x16<n>": Lucid sends no priorities)
    client = redis.Redis.from_url(redis_url)
    assert client.llen(f"{prefix}.compress") == 3
    assert not client.keys(f"{prefix}.compress\x06*")
    client.delete(f"{prefix}.compress")


def test_a_second_deployment_on_the_same_broker_never_takes_this_ones_tasks(
    prefixed_stack: Stack, redis_url: str, tmp_path: Path
) -> None:
    other = f"pb{uuid.uuid4().hex[:6]}"
    other_env = {"REDIS_URL": redis_url, "QUEUE_PREFIX": other}
    assert send_and_count(other_env, sends=4)["compress"] == 4

    # the running deployment works its own session through every stage meanwhile
    client = Client(prefixed_stack.api_url, timeout=120, token=prefixed_stack.admin_token)
    data = hashlib.sha256(b"prefix").digest() * (3 * CHUNK // 32 + 17)
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    sid = client.create({"filename": "rec.bin"})["session_id"]
    client.upload(sid, path)
    status = client.wait(sid, timeout=120)
    assert status["state"] == "STOPPED" and status["anchor"]["status"] == "confirmed", status
    out = tmp_path / "out.bin"
    client.download(sid, out)
    assert out.read_bytes() == data

    # ... and left the other deployment's tasks where they were, every one
    time.sleep(1)
    assert send_and_count(other_env)["compress"] == 4
    redis.Redis.from_url(redis_url).delete(f"{other}.compress")


def _health(env: dict[str, str], stage: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.health", stage],
        env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_health_check_finds_its_own_group_and_only_it(prefixed_stack: Stack) -> None:
    env = dict(prefixed_stack.env)
    assert _health(env, "compress").returncode == 0
    # another deployment's name on this host: no such node answers
    other = _health(env | {"QUEUE_PREFIX": "nobody"}, "compress")
    assert other.returncode == 1 and "compress@nobody." in other.stderr
