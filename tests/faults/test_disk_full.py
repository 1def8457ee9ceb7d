"""The disk-full case of the fault campaign (issue 8): the stack's data directory is a
small tmpfs that fills up in the middle of an upload.

The upload is answered 507 naming the cause; nothing half-written counts (the committed
offset is where a resume must start, and what is stored there is exactly the input's
prefix); once space returns the same upload resumes and ends anchored byte for byte, and
a session anchored before the disk filled still verifies and downloads.
Mounting needs root with CAP_SYS_ADMIN; elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.corpus import corpus_blocks
from cli.client import ApiError, Client
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from tests.integration.conftest import CHUNK, stack_env

pytestmark = pytest.mark.slow

DISK_MB = 24


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root with CAP_SYS_ADMIN): {done.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path, leave: int) -> None:
    """Fill the disk, then give back `leave` bytes (a mid-upload ENOSPC, not an instant one)."""
    block, failed = b"\0" * 65536, 0
    with open(path, "wb", buffering=0) as f:
        while not failed:
            try:
                f.write(block)
            except OSError as exc:
                failed = exc.errno or -1
        f.truncate(max(0, f.tell() - leave))
    assert failed == errno.ENOSPC


def test_a_full_disk_mid_upload_is_507_and_the_upload_resumes_once_space_returns(
    small_disk: Path, redis_url: str, mongodb_url: str, tmp_path: Path
) -> None:
    env = stack_env(redis_url, mongodb_url, "lucid_disk_full", RECONCILE_AFTER_S="2")
    config = StackConfig(
        data_dir=small_disk / "lucid",
        api_port=free_port(),
        flower_port=None,
        extra_env=env,
        loglevel="WARNING",
    )
    earlier = b"".join(corpus_blocks(10 * CHUNK + 77, seed=91))
    data = b"".join(corpus_blocks(64 * CHUNK + 5, seed=92))  # 4 MiB, more than is left
    (tmp_path / "earlier.bin").write_bytes(earlier)
    (tmp_path / "rec.bin").write_bytes(data)
    with Stack(config) as stack:
        client = Client(stack.api_url, timeout=60, attempts=1, token=stack.admin_token)
        first = client.create()["session_id"]
        client.upload(first, tmp_path / "earlier.bin")
        assert client.wait(first, timeout=60)["state"] == "STOPPED"

        _fill(small_disk / "filler", leave=1 << 20)
        sid = client.create()["session_id"]
        with pytest.raises(ApiError) as refused:
            client.upload(sid, tmp_path / "rec.bin")
        assert refused.value.status == 507, refused.value.body
        assert refused.value.body["error"] == "insufficient_storage"
        assert "disk full" in refused.value.body["message"]
        assert str(small_disk) not in refused.value.body["message"]
        committed = client.offset(sid)
        assert 0 <= committed < len(data)
        assert client.status(sid)["state"] == "ACTIVE"

        (small_disk / "filler").unlink()  # space returns
        started = time.monotonic()
        Client(stack.api_url, timeout=60, token=stack.admin_token).upload(sid, tmp_path / "rec.bin")
        assert client.wait(sid, timeout=120)["state"] == "STOPPED"
        print(f"\ndisk full: committed {committed} of {len(data)} bytes before the 507; "
              f"resumed and anchored in {time.monotonic() - started:.1f} s")  # fmt: skip

        for session, expected in ((sid, data), (first, earlier)):
            out = tmp_path / f"{session}.out"
            client.download(session, out)
            assert out.read_bytes() == expected
            code, report = client.verify(session)
            assert code == 200 and report["ok"], report
