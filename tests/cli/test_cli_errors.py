"""Every expected failure of a `lucid` command is one `error:` line and a non-zero exit,
never a traceback: run as a user runs it, in a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.servers import free_port

SID = "f" * 32


def lucid(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any Lucid store or stack setting."""
    drop = {"REDIS_URL", "BROKER_URL", "MONGODB_URL", "LUCID_API_URL", "CHUNK_SIZE_MB"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def assert_one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "command", [["status", SID], ["verify", SID], ["get", SID, "-o", "{tmp}/out.bin"]]
)
def test_a_command_against_a_stopped_stack_says_so_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    api = f"http://127.0.0.1:{free_port()}"
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    result = lucid(*args, "--api", api)
    assert_one_error_line(result, "cannot reach the Lucid API", api, "lucid up")
    assert not list(tmp_path.iterdir())


def test_get_into_a_missing_directory_says_so_before_downloading(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "dir" / "x"
    result = lucid("get", SID, "-o", str(target), "--api", f"http://127.0.0.1:{free_port()}")
    assert_one_error_line(result, "expected a writable directory", str(target.parent))


def test_demo_on_a_taken_port_refuses_before_generating_anything(
    taken_port: int, tmp_path: Path
) -> None:
    data_dir = tmp_path / "demo"
    result = lucid("demo", "--port", str(taken_port), "--data-dir", str(data_dir))
    assert_one_error_line(result, "taken", str(taken_port))
    assert result.stdout == ""  # not even "1. generating ..."
    assert not data_dir.exists()


def test_demo_with_a_bad_setting_refuses_before_generating_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    result = lucid("demo", "--data-dir", str(data_dir), env=clean_env(CHUNK_SIZE_MB="abc"))
    assert_one_error_line(result, "CHUNK_SIZE_MB")
    assert not data_dir.exists()


def test_up_with_a_bad_setting_or_a_taken_port_refuses_in_one_line(
    taken_port: int, tmp_path: Path
) -> None:
    bad = lucid("up", "--data-dir", str(tmp_path), env=clean_env(CHUNK_SIZE_MB="abc"))
    assert_one_error_line(bad, "CHUNK_SIZE_MB")
    taken = lucid("up", "--data-dir", str(tmp_path), "--port", str(taken_port))
    assert_one_error_line(taken, "taken", str(taken_port))
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_workers_without_their_stores_refuse_at_start(tmp_path: Path) -> None:
    result = lucid("workers", env=clean_env(LUCID_DATA_DIR=str(tmp_path)))
    assert_one_error_line(result, "MONGODB_URL", "REDIS_URL")
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("command", ["demo", "up", "bench", "bench-growth", "status"])
def test_a_commands_help_is_its_help_and_exits_zero(command: str) -> None:
    # click ends --help with its Exit, a RuntimeError: the group's error handling took it
    # for a failure and printed "error: 0" with exit code 1.
    result = lucid(command, "--help")
    assert result.returncode == 0, result
    assert result.stdout.startswith("Usage: ")
    assert "error" not in result.stderr
