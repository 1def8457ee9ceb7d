"""GET .../pipeline and POST .../pipeline/pause|resume on the real stack: a paused
session's chunks are held (not lost, not hashed) while another session's go through on
the same queues; resume finishes it to anchored, and it restores byte for byte."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.corpus import corpus_blocks
from cli.client import Client
from lucid.runtime import Runtime
from tests.integration.conftest import CHUNK
from tests.integration.test_lifecycle_api import SESSIONS


def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def test_paused_pipeline_holds_its_chunks_while_others_pass_and_resume_completes_it(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    data = b"".join(corpus_blocks(4 * CHUNK + 321, 60))
    (tmp_path / "a.bin").write_bytes(data)
    (tmp_path / "b.bin").write_bytes(b"".join(corpus_blocks(2 * CHUNK + 9, 61)))
    paused_sid = client.create()["session_id"]
    status = client.pipeline(paused_sid, "pause")
    assert status["paused"] is True and status["paused_by"] == "lucid-up:admin"
    assert client.status(paused_sid)["pipeline_paused"] is True

    client.upload(paused_sid, tmp_path / "a.bin")  # stopped: 5 chunks queued, then the seal
    held = _until(lambda: (s := client.pipeline(paused_sid))["held"] == 5 and s, "5 held chunks")
    assert held["chunks"]["total"] == 5 and held["chunks"]["hashed"] == 0
    assert held["queued"] == 0 and held["failed"] is None

    # Another session on the same queues goes through while the paused one waits.
    other = client.create()["session_id"]
    client.upload(other, tmp_path / "b.bin")
    assert client.wait(other, timeout=120)["anchor"]["status"] == "confirmed"
    assert runtime.meta.stage_counts(paused_sid, 5)["compressed"] == 0
    assert client.status(paused_sid)["state"] == "STOPPING"

    resumed = client.pipeline(paused_sid, "resume")
    assert resumed["paused"] is False
    assert client.status(paused_sid)["pipeline_paused"] is False
    final = client.wait(paused_sid, timeout=120)
    assert final["state"] == "STOPPED" and final["anchor"]["status"] == "confirmed"
    after = client.pipeline(paused_sid)
    assert after["held"] == 0 and after["chunks"]["hashed"] == 5
    assert after["stages"]["compress"]["tasks"] >= 5
    out = tmp_path / "out.bin"
    assert client.download(paused_sid, out) == len(data)
    assert out.read_bytes() == data


def test_pipeline_of_an_unknown_session_is_404_and_of_a_deleted_one_410(client: Client) -> None:
    assert client.http.get(f"{SESSIONS}/{'0' * 32}/pipeline").status_code == 404
    sid = client.create()["session_id"]
    client.delete(sid)
    assert client.http.post(f"{SESSIONS}/{sid}/pipeline/pause").status_code == 410
