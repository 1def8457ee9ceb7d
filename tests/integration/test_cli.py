"""The `lucid` command as a user runs it: up (and its clean stop), submit, status, keys."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
from click.testing import CliRunner

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.main import cli
from cli.servers import free_port
from tests.integration.conftest import CHUNK, cli_env, stack_env, wait_for_health


def test_submit_wait_json_prints_one_anchored_session_object(
    client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "rec.bin"
    path.write_bytes(b"".join(corpus_blocks(3 * CHUNK + 10, seed=31)))
    result = CliRunner(env=cli_env(client)).invoke(
        cli, ["submit", str(path), "--wait", "--json", "--api", str(client.http.base_url)]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) >= {"session_id", "state", "chunks", "merkle_root", "anchor"}
    assert out["state"] == "STOPPED"
    assert out["chunks"] == 4
    assert out["anchor"]["status"] == "confirmed"

    status = CliRunner(env=cli_env(client)).invoke(
        cli, ["status", out["session_id"], "--json", "--api", str(client.http.base_url)]
    )
    assert status.exit_code == 0
    assert json.loads(status.stdout)["merkle_root"] == out["merkle_root"]


def test_status_of_unknown_session_exits_non_zero_with_the_reason(client: Client) -> None:
    result = CliRunner(env=cli_env(client)).invoke(
        cli, ["status", "f" * 32, "--api", str(client.http.base_url)]
    )
    assert result.exit_code == 1
    assert "not" in result.output and "f" * 32 in result.output


def test_keys_init_writes_private_keys_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    first = CliRunner().invoke(cli, ["keys", "init", "--key-dir", str(key_dir)])
    assert first.exit_code == 0, first.output
    for name in ("recipient.key", "ledger.key"):
        assert stat.S_IMODE((key_dir / name).stat().st_mode) == 0o600
    before = (key_dir / "recipient.key").read_bytes()
    again = CliRunner().invoke(cli, ["keys", "init", "--key-dir", str(key_dir)])
    assert again.exit_code != 0
    assert "error:" in again.output
    assert (key_dir / "recipient.key").read_bytes() == before


def test_lucid_up_serves_and_stops_every_process_on_sigterm(
    redis_url: str, mongodb_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **stack_env(redis_url.rsplit("/", 1)[0] + "/3", mongodb_url, "lucid_up"),
        "COMPRESS_WORKERS": "1",
        "ENCRYPT_WORKERS": "1",
    }
    argv = [sys.executable, "-m", "cli.main", "up", "--data-dir", str(tmp_path / "data"),
            "--port", str(port), "--flower-port", "0"]  # fmt: skip
    up = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_health(up, port, 90)
        time.sleep(3)  # let every worker group finish starting
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 6  # 5 worker groups (with their pools) and the API
        token_file = tmp_path / "data" / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        # Any command finds the stack's admin token by itself (the README's flow).
        listed = CliRunner(
            env={"LUCID_DATA_DIR": str(tmp_path / "data"), "LUCID_TOKEN": None}
        ).invoke(cli, ["status", "f" * 32, "--api", f"http://127.0.0.1:{port}"])
        assert "does not exist" in listed.output, listed.output
        up.send_signal(signal.SIGTERM)
        stdout, stderr = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}" in stdout
    assert "stopping" in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
