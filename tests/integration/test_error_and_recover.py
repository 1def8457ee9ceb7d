"""A chunk that fails permanently moves its session to ERROR with the reason; once the
cause is gone, recover + stop re-run the seal and the session completes intact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.servers import free_port, spawn
from cli.stack import Stack, StackConfig
from lucid.runtime import Runtime
from lucid.settings import load_settings
from lucid.storage import layout
from tests.integration.conftest import CHUNK, stack_env
from workers.profiles import WorkerGroup, worker_argv


@pytest.fixture
def stack_without_hash(redis_url: str, mongodb_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Every stage but hash: chunks wait, encrypted, in the hash queue."""
    env = stack_env(redis_url.rsplit("/", 1)[0] + "/2", mongodb_url, "lucid_recover")
    config = StackConfig(
        data_dir=tmp_path / "stack", api_port=free_port(), flower_port=None, extra_env=env,
        stages=("compress", "encrypt", "merkle", "anchor"), loglevel="WARNING",
    )  # fmt: skip
    with Stack(config) as running:
        yield running


def _until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_failed_chunk_sets_error_with_reason_and_recover_completes_the_session(
    stack_without_hash: Stack, tmp_path: Path
) -> None:
    stack = stack_without_hash
    client = Client(stack.api_url, timeout=60, token=stack.admin_token)
    rt = Runtime(load_settings(stack.env))
    data = b"".join(corpus_blocks(3 * CHUNK, seed=21))
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.upload(sid, path)
    _until(lambda: client.status(sid)["chunks"]["encrypted"] == 3)

    lost = stack.config.data_dir / "blobs" / layout.encrypted_key(sid, 1)
    lost.unlink()  # the ciphertext of chunk 1 is lost before its hash stage ran
    hash_group = WorkerGroup("hash", 1)
    worker = spawn("worker-hash", worker_argv(hash_group, loglevel="WARNING"), tmp_path, stack.env)
    try:
        _until(lambda: client.status(sid)["state"] == "ERROR")
        status = client.status(sid)
        assert "hash failed" in status["error"]
        assert "FileNotFoundError" in status["error"]
        assert status["history"][-1]["to_state"] == "ERROR"

        response = client.http.post(f"/api/v1/sessions/{sid}/recover")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "ACTIVE"
        assert client.http.post(f"/api/v1/sessions/{sid}/stop").status_code == 202
        final = client.wait(sid, timeout=120)
    finally:
        worker.stop()

    assert final["state"] == "STOPPED", final
    assert final["error"] is None
    assert final["chunk_count"] == 3
    out = tmp_path / "out.bin"
    client.download(sid, out)
    assert out.read_bytes() == data
    assert rt.blobs.exists(layout.encrypted_key(sid, 1))
