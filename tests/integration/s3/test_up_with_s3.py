"""`lucid up --blobs s3` starts its own SeaweedFS and keeps the blobs there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.servers import free_port
from tests.integration.conftest import CHUNK, stack_env, wait_for_health


def test_lucid_up_with_s3_blobs_starts_seaweedfs_and_stores_there(
    redis_url: str, mongodb_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "BLOB_"))},
        **stack_env(redis_url.rsplit("/", 1)[0] + "/10", mongodb_url, "lucid_up_s3"),
        "COMPRESS_WORKERS": "1",
        "ENCRYPT_WORKERS": "1",
    }
    data_dir = tmp_path / "data"
    argv = [sys.executable, "-m", "cli.main", "up", "--data-dir", str(data_dir),
            "--port", str(port), "--flower-port", "0", "--blobs", "s3"]  # fmt: skip
    up = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_health(up, port, 120)
        token = (data_dir / "admin.token").read_text().strip()
        client = Client(f"http://127.0.0.1:{port}", timeout=120, token=token)
        data = b"".join(corpus_blocks(3 * CHUNK + 99, seed=5))
        (tmp_path / "rec.bin").write_bytes(data)
        sid = client.create()["session_id"]
        client.upload(sid, tmp_path / "rec.bin")
        assert client.wait(sid, timeout=120)["state"] == "STOPPED"
        client.download(sid, tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == data
        children = psutil.Process(up.pid).children(recursive=True)
        assert any("weed" in " ".join(p.cmdline()) for p in children)
        up.send_signal(signal.SIGTERM)
        stdout, stderr = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, stderr
    assert "s3" in stdout and "http://127.0.0.1:" in stdout
    # The blobs went to SeaweedFS's volumes, none to the filesystem store.
    assert not list((data_dir / "blobs").rglob(f"*{sid}*"))
    assert (data_dir / "seaweedfs" / "s3-credentials").stat().st_mode & 0o077 == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
