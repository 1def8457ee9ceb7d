"""The fault campaign (issue 8): real processes SIGKILLed mid-upload and mid-pipeline.

For each of the compress, encrypt and hash worker groups, Redis, the metadata server
(SecantusDB) and the API process, killed while a recording is being uploaded and again
while its chunks are in the pipeline: the session ends anchored — by itself, or through
the documented recovery (the client resumes from the committed offset; an ERROR session
is `/recover`ed and `/stop`ped) — the restored bytes equal the input byte for byte, and no
plaintext or partial-chunk blob is left behind.

The stack is the one `lucid up` runs (Stack), supervised the way `lucid up` supervises it,
with its own redis-server and SecantusDB on fixed ports so they can be killed and started
again where the stack expects them. Each outcome is printed as one row of the campaign's
table (`pytest tests/faults -s` shows it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.corpus import corpus_blocks
from cli.client import ApiError, Client
from cli.servers import ManagedProcess, free_port, start_redis, start_secantus
from cli.stack import Stack, StackConfig
from cli.supervisor import Supervisor
from lucid.runtime import Runtime
from lucid.settings import load_settings
from tests.integration.conftest import CHUNK, stack_env

pytestmark = pytest.mark.slow

SIZE = 96 * CHUNK + 1234  # 6 MiB in 64 KiB chunks: long enough to be hit in flight
FAULTS = ("compress", "encrypt", "hash", "redis", "metadata", "api")
PHASES = ("upload", "pipeline")
SETTLE_S = 120.0


@dataclass
class Servers:
    """redis-server and SecantusDB on fixed ports, so a killed one comes back in place."""

    base: Path
    redis_port: int = field(default_factory=free_port)
    mongo_port: int = field(default_factory=free_port)
    redis: ManagedProcess | None = None
    mongo: ManagedProcess | None = None

    def start_redis(self) -> str:
        self.redis, url = start_redis(self.base / "redis", port=self.redis_port)
        return url

    def start_mongo(self) -> str:
        self.mongo, url = start_secantus(self.base / "secantus", port=self.mongo_port)
        return url

    def stop(self) -> None:
        for proc in (self.redis, self.mongo):
            if proc is not None:
                proc.stop()


@dataclass
class Campaign:
    stack: Stack
    servers: Servers
    runtime: Runtime
    rows: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)

    def proc(self, name: str) -> ManagedProcess:
        return next(p for p in self.stack.procs if p.name == name)

    def kill(self, fault: str) -> None:
        """SIGKILL the whole process group of what `fault` names; servers come back after
        a second, as an operator (or systemd) would restart them."""
        if fault in ("redis", "metadata"):
            proc = self.servers.redis if fault == "redis" else self.servers.mongo
            assert proc is not None
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(10)
            time.sleep(1.0)
            self.servers.start_redis() if fault == "redis" else self.servers.start_mongo()
            return
        name = "api" if fault == "api" else f"worker-{fault}"
        proc = self.proc(name)
        os.killpg(proc.popen.pid, signal.SIGKILL)  # the main process and every child
        proc.popen.wait(10)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    base = tmp_path_factory.mktemp("faults")
    servers = Servers(base)
    try:
        env = stack_env(
            servers.start_redis(),
            servers.start_mongo(),
            "lucid_faults",
            COMPRESS_WORKERS="1",
            ENCRYPT_WORKERS="1",
            RECONCILE_AFTER_S="2",
            RECONCILE_INTERVAL_S="1",
        )
        config = StackConfig(
            data_dir=base / "stack",
            api_port=free_port(),
            flower_port=None,
            extra_env=env,
            loglevel="WARNING",
        )
        with Stack(config) as stack:
            result = Campaign(stack, servers, Runtime(load_settings(stack.env)))
            supervisor = Supervisor(stack.procs, result.said.append, max_deaths=50)
            done = threading.Event()

            def supervise() -> None:
                while not done.wait(0.2):
                    supervisor.poll()

            thread = threading.Thread(target=supervise, name="supervisor", daemon=True)
            thread.start()
            yield result
            done.set()
            thread.join(5)
            print("\n| fault | phase | outcome | recovery | bytes compared | seconds |")
            print("|---|---|---|---|---|---:|")
            print("\n".join(result.rows))
    finally:
        servers.stop()


def _recording(tmp: Path, seed: int) -> tuple[Path, bytes]:
    data = b"".join(corpus_blocks(SIZE, seed=seed))[:SIZE]
    path = tmp / "recording.bin"
    path.write_bytes(data)
    return path, data


def _patient(call: Callable[[], dict[str, object]], deadline: float) -> dict[str, object]:
    """Retry a status call through an outage (503, refused connection) until `deadline`."""
    while True:
        try:
            return call()
        except (ApiError, httpx.TransportError) as exc:
            if isinstance(exc, ApiError) and exc.status < 500:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _settle(client: Client, sid: str) -> str:
    """Wait until the session is anchored; recover an ERROR session the documented way.
    Returns the recovery that was needed."""
    deadline = time.monotonic() + SETTLE_S
    recovery = "none"
    while True:
        status = _patient(lambda: client.status(sid), deadline)
        anchor = status.get("anchor") or {}
        if isinstance(anchor, dict) and anchor.get("status") == "confirmed":
            return recovery
        if status["state"] == "ERROR":
            assert recovery == "none", f"failed again after recovery: {status['error']}"
            recovery = f"ERROR ({status['error']}) → /recover + /stop"
            _patient(lambda: client.http.post(f"/api/v1/sessions/{sid}/recover").json(), deadline)
            _patient(lambda: client.http.post(f"/api/v1/sessions/{sid}/stop").json(), deadline)
        assert time.monotonic() < deadline, f"not anchored after {SETTLE_S}s: {status}"
        time.sleep(0.2)


def _offset(client: Client, sid: str) -> int:
    with contextlib.suppress(httpx.TransportError, KeyError, ValueError):
        response = client.http.head(f"/api/v1/sessions/{sid}")
        if response.status_code == 200:
            return int(response.headers["Upload-Offset"])
    return -1


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("fault", FAULTS)
def test_a_process_killed_midway_changes_no_byte(
    campaign: Campaign, fault: str, phase: str, tmp_path: Path
) -> None:
    path, data = _recording(tmp_path, seed=FAULTS.index(fault) * 10 + PHASES.index(phase))
    client = Client(
        campaign.stack.api_url,
        timeout=30,
        attempts=60,
        backoff=0.25,
        token=campaign.stack.admin_token,
    )
    sid = client.create({"fault": fault, "phase": phase})["session_id"]
    failure: list[BaseException] = []

    if phase == "upload":

        def slowly(_: int) -> None:  # 1 MiB per call: the upload lasts about a second
            time.sleep(0.15)

        def upload() -> None:
            try:
                client.upload(sid, path, slowly)
            except BaseException as exc:
                failure.append(exc)

        uploader = threading.Thread(target=upload, name="uploader")
        uploader.start()
        while _offset(client, sid) < SIZE // 3 and uploader.is_alive():
            time.sleep(0.02)
        assert _offset(client, sid) < SIZE, "the upload ended before the fault"
        started = time.monotonic()
        campaign.kill(fault)
        uploader.join(SETTLE_S)
        assert not failure, failure
    else:
        client.upload(sid, path)
        started = time.monotonic()
        campaign.kill(fault)

    recovery = _settle(client, sid)
    seconds = time.monotonic() - started

    out = tmp_path / "restored.bin"
    client.download(sid, out)
    restored = out.read_bytes()
    assert len(restored) == len(data)
    assert restored == data, "restored bytes differ from the recording"
    code, report = client.verify(sid)
    assert code == 200 and report["ok"], report

    session = campaign.runtime.meta.get_session(sid)
    assert session["chunk_count"] == -(-SIZE // CHUNK)
    kept = ("/enc/", "/leaves.jsonl")  # ciphertext, and the sealed leaf list (digests only)
    blobs = campaign.runtime.blobs.keys(f"sessions/{sid}/")
    left = [k for k in blobs if not any(part in k for part in kept)]
    assert left == [], f"plaintext or intermediate blobs left behind: {left}"

    campaign.rows.append(
        f"| {fault} | {phase} | anchored | {recovery} | {len(data)} = {len(restored)}, "
        f"identical | {seconds:.1f} |"
    )
