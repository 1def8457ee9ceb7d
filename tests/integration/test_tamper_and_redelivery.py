"""Tampering with stored chunks is caught; a killed worker's chunk is redelivered."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.main import cli
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from lucid.integrity.leaves import ciphertext_digest_of
from lucid.integrity.merkle import BLAKE3, root
from lucid.pipeline.stages import leaf_record
from lucid.runtime import Runtime
from lucid.settings import load_settings
from lucid.storage import layout
from tests.integration.conftest import CHUNK, cli_env, stack_env


def _flip_byte(path: Path, offset: int) -> None:
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_tampered_stored_chunk_is_caught_by_get_and_verify(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    data = b"".join(corpus_blocks(5 * CHUNK, seed=11))
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.upload(sid, path)
    assert client.wait(sid, timeout=120)["state"] == "STOPPED"
    _flip_byte(runtime.settings.blobs_path / layout.encrypted_key(sid, 3), 100)

    api = ["--api", str(client.http.base_url)]
    out = tmp_path / "out.bin"
    got = CliRunner(env=cli_env(client)).invoke(cli, ["get", sid, "-o", str(out), *api])
    assert got.exit_code != 0
    assert "chunk 3" in got.output
    assert not out.exists()

    verified = CliRunner(env=cli_env(client)).invoke(cli, ["verify", sid, *api])
    assert verified.exit_code != 0
    assert "chunk 3" in verified.output


@pytest.fixture
def slow_stack(redis_url: str, mongodb_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A stack whose compress stage is slow enough to be killed mid-task (16 MiB, zstd-19)."""
    # Its own Redis database, so the session stack's workers never take its tasks.
    env = stack_env(
        redis_url.rsplit("/", 1)[0] + "/1", mongodb_url, "lucid_kill",
        CHUNK_SIZE_MB="16", COMPRESSION_LEVEL="19", COMPRESS_WORKERS="1", ENCRYPT_WORKERS="1",
    )  # fmt: skip
    config = StackConfig(
        data_dir=tmp_path / "stack", api_port=free_port(), flower_port=None, extra_env=env,
        stages=("compress", "encrypt", "hash", "merkle", "anchor"), loglevel="WARNING",
    )  # fmt: skip
    with Stack(config) as running:
        yield running


def test_killed_worker_chunk_is_redelivered_and_root_unchanged(
    slow_stack: Stack, tmp_path: Path
) -> None:
    from celery import Celery

    client = Client(slow_stack.api_url, timeout=120, token=slow_stack.admin_token)
    data = os.urandom(2 * 16 * 1024 * 1024)  # incompressible: zstd-19 takes seconds
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.upload(sid, path)

    # The final chunk is cut only at stop, so only the seal's chord carries it: the session
    # can seal only if the killed message comes back.
    control = Celery("probe", broker=slow_stack.env["REDIS_URL"])
    victim = None
    seen: list[object] = []
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        for tasks in (control.control.inspect(timeout=0.5).active() or {}).values():
            for task in tasks:
                seen.append((task["name"], task["args"]))
                if task["name"] == "lucid.compress" and task["args"] == [sid, 1, True]:
                    victim = task
        time.sleep(0.05)
    assert victim is not None, f"the final chunk's compress task was not seen running: {seen[-5:]}"
    os.kill(victim["worker_pid"], signal.SIGKILL)

    status = client.wait(sid, timeout=300)
    # The killed message is rejected and requeued by the worker's main process; only its
    # second delivery can have completed the chord.
    assert status["state"] == "STOPPED", status
    rt = Runtime(load_settings(slow_stack.env))
    deliveries = int(rt_redis(slow_stack).get(f"lucid:deliveries:{victim['id']}") or 0)
    assert deliveries >= 2, "the killed task was not delivered again"

    chunks = rt.meta.list_chunks(sid)
    assert [c["index"] for c in chunks] == [0, 1]
    stored = [
        ciphertext_digest_of(rt.blobs.get(layout.encrypted_key(sid, c["index"]))) for c in chunks
    ]
    assert stored == [leaf_record(c).ciphertext_digest for c in chunks]
    assert root(BLAKE3, [leaf_record(c).leaf_hash() for c in chunks]).hex() == status["merkle_root"]
    out = tmp_path / "out.bin"
    client.download(sid, out)
    assert out.read_bytes() == data


def rt_redis(stack: Stack):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(stack.env["REDIS_URL"])
