"""`lucid up` as an operator meets it: it supervises its children, keeps Flower's remote
control behind credentials, stops everything on SIGHUP; and the workers ride out Redis
being killed mid-pipeline. Real processes, real ports, no mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil
import pytest

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.servers import free_port, port_is_open, start_redis
from cli.stack import Stack, StackConfig
from lucid.crypto.tokens import read_token_file
from tests.integration.conftest import CHUNK, stack_env

pytestmark = pytest.mark.slow


@dataclass
class Up:
    popen: subprocess.Popen[str]
    data_dir: Path
    urls: dict[str, str]

    @property
    def ports(self) -> list[int]:
        return [int(urlparse(url).port or 0) for url in self.urls.values()]

    def group_main(self, stage: str) -> psutil.Process | None:
        """The main process of a worker group (a direct child of `lucid up`)."""
        for child in psutil.Process(self.popen.pid).children():
            try:
                argv = child.cmdline()
            except psutil.Error:  # exited a moment ago, not yet reaped
                continue
            if "-Q" in argv and argv[argv.index("-Q") + 1] == stage:
                return child
        return None


def _small_env() -> dict[str, str]:
    """No REDIS_URL / MONGODB_URL: `lucid up` starts its own redis-server and SecantusDB."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MONGODB_URL"}}
    return {
        **env,
        **{k: v for k, v in stack_env("", "", "lucid_up_ops").items() if k.endswith("WORKERS")},
        "CHUNK_SIZE_MB": str(CHUNK / (1024 * 1024)),
        "COMPRESS_WORKERS": "1",
        "ENCRYPT_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    data_dir = tmp_path_factory.mktemp("up")
    argv = [sys.executable, "-m", "cli.main", "up", "--data-dir", str(data_dir),
            "--port", str(free_port()), "--flower-port", str(free_port())]  # fmt: skip
    popen = subprocess.Popen(
        argv, env=_small_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        urls: dict[str, str] = {}
        assert popen.stdout is not None
        for line in popen.stdout:  # the URLs, then the logs line once everything answers
            name, _, value = line.strip().partition(" ")
            if name == "logs":
                break
            if value.strip().startswith(("redis://", "mongodb://", "http://")):
                urls[name] = value.strip()
        assert popen.poll() is None, popen.communicate()[1]
        assert set(urls) == {"redis", "mongodb", "flower", "api"}
        yield Up(popen, data_dir, urls)
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(60)
            except subprocess.TimeoutExpired:
                popen.kill()


def test_flower_remote_control_needs_credentials_read_only_endpoints_stay_open(up: Up) -> None:
    flower = up.urls["flower"]
    shutdown = httpx.post(f"{flower}/api/worker/shutdown/anchor@{os.uname().nodename}")
    assert shutdown.status_code == 401
    assert httpx.get(f"{flower}/api/workers").status_code == 401
    assert httpx.get(f"{flower}/healthcheck").text == "OK"
    assert httpx.get(f"{flower}/metrics").status_code == 200

    credentials = up.data_dir / "flower-credentials"
    assert credentials.stat().st_mode & 0o777 == 0o600
    user, _, password = credentials.read_text().strip().partition(":")
    listed = httpx.get(f"{flower}/api/workers", auth=(user, password), timeout=10)
    assert listed.status_code == 200
    assert up.group_main("anchor") is not None and up.group_main("anchor").is_running()  # type: ignore[union-attr]


def test_a_killed_worker_group_is_restarted_and_works(up: Up) -> None:
    victim = up.group_main("hash")
    assert victim is not None
    pool = victim.children()
    victim.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        again = up.group_main("hash")
        if again is not None and again.pid != victim.pid:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the hash worker group was not restarted")
    assert up.popen.poll() is None  # the rest of the stack kept running

    client = Client(up.urls["api"], timeout=60, token=read_token_file(up.data_dir / "admin.token"))
    sid = client.create({})["session_id"]
    path = up.data_dir / "rec.bin"
    path.write_bytes(b"".join(corpus_blocks(3 * CHUNK + 5, seed=7)))
    client.upload(sid, path)
    status = client.wait(sid, timeout=90)
    assert status["anchor"]["status"] == "confirmed", status
    _, orphans = psutil.wait_procs(pool, timeout=10)
    assert not orphans  # the killed group's pool did not linger


def test_sighup_stops_every_child_and_frees_every_port(up: Up) -> None:
    children = psutil.Process(up.popen.pid).children(recursive=True)
    assert len(children) >= 8  # redis, secantus, 5 worker groups (and pools), flower, api
    assert all(port_is_open(port) for port in up.ports)
    up.popen.send_signal(signal.SIGHUP)
    _, stderr = up.popen.communicate(timeout=90)
    assert up.popen.returncode == 0, stderr
    assert "SIGHUP received" in stderr and "Traceback" not in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert not [port for port in up.ports if port_is_open(port)]


def test_workers_ride_out_redis_killed_mid_pipeline(mongodb_url: str, tmp_path: Path) -> None:
    """Redis is SIGKILLed while a session is in the pipeline and restarted on its port:
    no worker group exits, the session in flight and one submitted afterwards anchor."""
    redis_port = free_port()
    redis, redis_url = start_redis(tmp_path / "redis", port=redis_port)
    config = StackConfig(
        data_dir=tmp_path / "data",
        api_port=free_port(),
        flower_port=None,
        extra_env=stack_env(
            redis_url, mongodb_url, "lucid_outage", COMPRESS_WORKERS="1", ENCRYPT_WORKERS="1"
        ),
        loglevel="WARNING",
    )
    try:
        with Stack(config) as stack:
            client = Client(stack.api_url, timeout=60, token=stack.admin_token)
            in_flight = client.create({})["session_id"]
            path = tmp_path / "rec.bin"
            path.write_bytes(b"".join(corpus_blocks(48 * CHUNK, seed=11)))
            client.upload(in_flight, path)
            assert (client.status(in_flight).get("anchor") or {}).get("status") != "confirmed"
            redis.popen.send_signal(signal.SIGKILL)
            redis.stop()
            time.sleep(3)  # long enough for every worker to notice
            redis, _ = start_redis(tmp_path / "redis", port=redis_port)

            after = client.create({})["session_id"]
            client.upload(after, path)
            for sid in (after, in_flight):
                status = client.wait(sid, timeout=120)
                assert status["state"] != "ERROR", status["error"]
                assert status["anchor"]["status"] == "confirmed"
            assert [p.name for p in stack.procs if not p.alive()] == []
    finally:
        redis.stop()


def test_demo_picks_a_free_port_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {**_small_env(), "TMPDIR": str(tmp_path)}  # where its default data directory goes
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--size-mb", "1"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "All checks passed." in result.stdout
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("lucid-demo-*"))  # stack stopped, directory removed
