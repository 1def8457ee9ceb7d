"""A full disk while anchoring to the file ledger (LEDGER_BACKEND=file): it stays as it
was, earlier sessions keep verifying, and the failed anchor is retried once there is room
again (real stack, with its ledger folder on a small tmpfs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from lucid.crypto.keys import ensure_keys, load_ledger_signing_key, load_ledger_verify_key
from lucid.integrity.ledger import Ledger
from tests.integration.conftest import CHUNK, stack_env


@pytest.fixture
def tiny_ledger_stack(redis_url: str, mongodb_url: str, tmp_path: Path) -> Iterator[Stack]:
    data_dir = tmp_path / "stack"
    ledger_dir = data_dir / "ledger"
    ledger_dir.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(ledger_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    # Its own Redis database, so the session stack's workers never take its tasks.
    # The file ledger: the one that a full local disk can hit (the default is the database).
    env = stack_env(
        redis_url.rsplit("/", 1)[0] + "/2", mongodb_url, "lucid_disk_full", LEDGER_BACKEND="file"
    )
    config = StackConfig(
        data_dir=data_dir, api_port=free_port(), flower_port=None, extra_env=env,
        loglevel="WARNING",
    )  # fmt: skip
    try:
        with Stack(config) as running:
            yield running
    finally:
        subprocess.run(["umount", str(ledger_dir)], check=False)


def _submit(client: Client, tmp_path: Path, seed: int) -> str:
    path = tmp_path / f"rec{seed}.bin"
    path.write_bytes(b"".join(corpus_blocks(2 * CHUNK + 100, seed=seed)))
    sid = client.create()["session_id"]
    client.upload(sid, path)
    return str(sid)


def test_anchor_on_a_full_disk_leaves_the_ledger_intact_and_is_retried(
    tiny_ledger_stack: Stack, tmp_path: Path
) -> None:
    client = Client(tiny_ledger_stack.api_url, timeout=120, token=tiny_ledger_stack.admin_token)
    earlier = [_submit(client, tmp_path, seed) for seed in (1, 2)]
    for sid in earlier:
        assert client.wait(sid, timeout=120)["anchor"]["status"] == "confirmed"

    data_dir = Path(tiny_ledger_stack.env["LUCID_DATA_DIR"])
    keys = data_dir / "keys"
    ensure_keys(keys)
    path = data_dir / "ledger" / "ledger.jsonl"
    ledger = Ledger(path, load_ledger_signing_key(keys), load_ledger_verify_key(keys))
    page = os.statvfs(path.parent).f_bsize
    # Other sessions anchored meanwhile, until the next entry needs a fresh tmpfs page.
    line = len(path.read_bytes().splitlines(keepends=True)[-1])  # every entry is this long
    n = 0
    while page - path.stat().st_size % page >= line:
        ledger.append(f"{n:032x}", bytes(32), 1)
        n += 1
    filler = path.parent / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    for block in (page, 1):
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * block)
    os.close(fd)
    before = path.read_bytes()

    victim = _submit(client, tmp_path, seed=3)
    deadline = time.monotonic() + 60
    while client.status(victim)["state"] != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the anchor task has failed at least once by now
    assert path.read_bytes() == before
    status = client.status(victim)
    assert status["anchor"] is None, status
    for sid in earlier:
        assert client.verify(sid)[0] == 200

    filler.unlink()
    status = client.wait(victim, timeout=90)
    assert status["state"] == "STOPPED" and status["anchor"]["status"] == "confirmed", status
    for sid in (*earlier, victim):
        assert client.verify(sid)[0] == 200
