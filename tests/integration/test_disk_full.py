"""An upload into a full disk answers 507 naming the cause, not 500 (issue 9.5).

The API's data directory is a small tmpfs, filled before the upload: a real ENOSPC.
Mounting needs root with CAP_SYS_ADMIN; elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.apiserver import admin_headers, running_api

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 4 MiB tmpfs (needs root with CAP_SYS_ADMIN): {done.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    block, failed = b"\0" * 65536, None
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            failed = exc.errno
    assert failed == errno.ENOSPC


def test_upload_into_a_full_disk_is_507_naming_it(
    small_disk: Path, redis_url: str, mongodb_url: str, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": "disk_full",
        "CHUNK_SIZE_MB": "0.0625",
    }
    with (
        running_api(small_disk, env, logs=tmp_path / "logs") as url,
        httpx.Client(base_url=url, timeout=60, headers=admin_headers(small_disk, env)) as http,
    ):
        sid = http.post("/api/v1/sessions", json={}).json()["session_id"]
        _fill(small_disk / "filler")
        response = http.put(f"/api/v1/sessions/{sid}/recording", content=os.urandom(1 << 20))
        assert response.status_code == 507, response.text
        body = response.json()
        assert body["error"] == "insufficient_storage", body
        assert "disk full" in body["message"], body
        assert str(small_disk) not in body["message"]

        (small_disk / "filler").unlink()
        assert http.get("/health").status_code == 200
