"""RabbitMQ as the broker (Redis stays the result backend, which chords need).

Uses the RabbitMQ answering on 127.0.0.1:5672 (guest/guest; override with
LUCID_TEST_AMQP_URL); none is started here, and the module skips, saying why, when none
answers. Each run gets a vhost of its own when `rabbitmqctl` can make one, else it shares
the default vhost under a unique QUEUE_PREFIX."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu.connection import Connection

from cli.client import Client
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from tests.integration.brokers import send_and_count
from tests.integration.conftest import CHUNK, stack_env

pytestmark = pytest.mark.slow

AMQP_BASE = os.environ.get("LUCID_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


def _answers(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # any failure to connect is a reason to skip
        return repr(exc)
    return None


def _rabbitmqctl(*args: str) -> bool:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return False
    return subprocess.run([ctl, *args], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    """A broker URL on a vhost of this run's own (or the default vhost if none can be made)."""
    problem = _answers(f"{AMQP_BASE}//")
    if problem:
        pytest.skip(f"no RabbitMQ answers at {AMQP_BASE.split('@')[-1]}: {problem}")
    vhost = f"lucid-test-{uuid.uuid4().hex[:8]}"
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl(
        "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"
    ):
        try:
            yield f"{AMQP_BASE}/{vhost}"
        finally:
            _rabbitmqctl("delete_vhost", vhost)
    else:
        _rabbitmqctl("delete_vhost", vhost)
        yield f"{AMQP_BASE}//"


@pytest.fixture(scope="module")
def rabbit_stack(
    amqp_url: str, redis_url: str, mongodb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    prefix = f"ra{uuid.uuid4().hex[:6]}"
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("rabbit"),
        api_port=free_port(),
        flower_port=None,
        extra_env=stack_env(
            redis_url, mongodb_url, f"lucid_{prefix}", BROKER_URL=amqp_url, QUEUE_PREFIX=prefix
        ),
        loglevel="WARNING",
    )
    with Stack(config) as running:
        yield running


def test_queue_depth_on_rabbitmq_counts_real_messages(amqp_url: str, redis_url: str) -> None:
    env = {
        "BROKER_URL": amqp_url,
        "REDIS_URL": redis_url,
        "QUEUE_PREFIX": f"rd{uuid.uuid4().hex[:6]}",
    }
    # never declared: RabbitMQ answers 404 (and closes the channel); every stage still reads 0
    assert set(send_and_count(env).values()) == {0}
    depths = send_and_count(env, sends=5)
    assert depths == {"compress": 5, "encrypt": 0, "hash": 0, "merkle": 0, "anchor": 0}
    with Connection(amqp_url) as conn:
        conn.default_channel.queue_delete(f"{env['QUEUE_PREFIX']}.compress")


def test_session_end_to_end_on_rabbitmq_is_restored_byte_identical(
    rabbit_stack: Stack, tmp_path: Path
) -> None:
    client = Client(rabbit_stack.api_url, timeout=120, token=rabbit_stack.admin_token)
    data = hashlib.sha256(b"rabbit").digest() * (5 * CHUNK // 32 + 9)
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    sid = client.create({"filename": "rec.bin"})["session_id"]
    client.upload(sid, path)
    status = client.wait(sid, timeout=180)
    assert status["state"] == "STOPPED", status
    assert status["chunk_count"] == 6
    assert status["anchor"]["status"] == "confirmed", status
    out = tmp_path / "restored.bin"
    assert client.download(sid, out) == len(data)
    assert out.read_bytes() == data


def test_two_deployments_on_one_vhost_never_take_each_others_tasks(
    rabbit_stack: Stack, amqp_url: str, redis_url: str, tmp_path: Path
) -> None:
    other = {
        "BROKER_URL": amqp_url,
        "REDIS_URL": redis_url,
        "QUEUE_PREFIX": f"rb{uuid.uuid4().hex[:6]}",
    }
    assert send_and_count(other, sends=3)["compress"] == 3
    test_session_end_to_end_on_rabbitmq_is_restored_byte_identical(rabbit_stack, tmp_path)
    assert send_and_count(other)["compress"] == 3
    # and the running deployment's own chunk queues are drained: it took all of its work
    own = send_and_count(dict(rabbit_stack.env))
    assert own["compress"] == own["encrypt"] == own["hash"] == 0, own
    with Connection(amqp_url) as conn:
        conn.default_channel.queue_delete(f"{other['QUEUE_PREFIX']}.compress")
