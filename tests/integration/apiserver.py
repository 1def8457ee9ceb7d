"""A lone API under gunicorn (no workers) on dependencies a test owns, so the test may
stop, hang or fill them without disturbing the shared stack."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx

from cli.servers import ManagedProcess, free_port, spawn
from lucid.crypto.keys import ensure_keys, load_token_signing_key
from lucid.crypto.tokens import SCOPES, issue_token
from lucid.settings import load_settings


def start_api(
    data_dir: Path, env: dict[str, str], timeout: float = 60.0, logs: Path | None = None
) -> tuple[ManagedProcess, str]:
    """gunicorn api.wsgi:app on a free port with `env`; returns once it answers HTTP."""
    port = free_port()
    full_env = {**os.environ, **env, "LUCID_DATA_DIR": str(data_dir)}
    ensure_keys(load_settings(full_env).keys_path)
    argv = [
        sys.executable, "-m", "gunicorn", "api.wsgi:app",
        "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--worker-class", "gthread", "--threads", "8",
        "--timeout", "120", "--graceful-timeout", "5",
    ]  # fmt: skip
    proc = spawn("api", argv, logs or data_dir / "logs", full_env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"api exited during start-up:\n{proc.tail()}")
        try:
            httpx.get(url + "/health", timeout=5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"api did not answer in {timeout}s:\n{proc.tail()}")


def admin_headers(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """An `Authorization` header with an every-scope token for the API in `data_dir`."""
    keys = load_settings({**os.environ, **env, "LUCID_DATA_DIR": str(data_dir)}).keys_path
    ensure_keys(keys)
    token = issue_token(
        load_token_signing_key(keys),
        subject="test:admin",
        tenant="default",
        scopes=SCOPES,
        ttl=timedelta(hours=2),
    )
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def running_api(data_dir: Path, env: dict[str, str], logs: Path | None = None) -> Iterator[str]:
    """The URL of an API that lives as long as the `with` block."""
    proc, url = start_api(data_dir, env, logs=logs)
    try:
        yield url
    finally:
        proc.stop()
