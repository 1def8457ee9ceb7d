"""The namespace harness itself: hosts reach each other only over their own links, a cut
link stops traffic, and teardown leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.multihost import netns

pytestmark = pytest.mark.slow


def _ping(host: netns.Host, address: str) -> subprocess.CompletedProcess[str]:
    """PING the Redis at address from inside `host` (prints PONG, or the error)."""
    code = (
        "import redis, redis.backoff, redis.retry\n"
        "once = redis.retry.Retry(redis.backoff.NoBackoff(), 0)\n"
        "try:\n"
        f"    print('PONG' if redis.Redis({address!r}, 6379, socket_timeout=2,"
        " socket_connect_timeout=2, retry=once).ping() else 'no')\n"
        "except redis.exceptions.RedisError as exc:\n"
        "    print(repr(exc))\n"
    )
    return host.run([sys.executable, "-c", code], timeout=40)


def test_redis_in_a_answers_b_until_the_link_is_cut_and_teardown_leaves_nothing(
    netns_ok: None, tmp_path: Path
) -> None:
    with netns.network(["a", "b"]) as net:
        a, b = net["a"], net["b"]
        server = a.spawn(
            ["redis-server", "--bind", a.address, "--port", "6379", "--save", "",
             "--protected-mode", "no", "--appendonly", "no", "--dir", str(tmp_path)],
            log=tmp_path / "redis.log",
        )  # fmt: skip
        netns.wait_port(b, a.address, 6379)
        assert "PONG" in _ping(b, a.address).stdout

        # the machine's own network does not see the host: it lives in its namespace only
        assert subprocess.run(
            ["redis-cli", "-h", a.address, "-p", "6379", "ping"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip() != "PONG"  # fmt: skip

        net.cut("b")
        cut = _ping(b, a.address)
        assert "PONG" not in cut.stdout and "Timeout" in cut.stdout, cut
        net.restore("b")
        netns.wait_port(b, a.address, 6379)
        assert "PONG" in _ping(b, a.address).stdout

        made = net.owned()
        assert len(made) == 3  # a, b and the switch
        pid = server.pid
    assert not set(made) & set(netns.namespaces())
    assert server.poll() is not None, f"redis-server {pid} outlived its namespace"


def test_teardown_happens_when_the_body_fails(netns_ok: None) -> None:
    made: list[str] = []

    def failing_body() -> None:
        with netns.network(["a"]) as net:
            made.extend(net.owned())
            net["a"].spawn(["sleep", "600"])
            raise RuntimeError("a test failing mid-way")

    with pytest.raises(RuntimeError):
        failing_body()
    assert made and not set(made) & set(netns.namespaces())


def test_stale_namespaces_of_a_dead_run_are_removed(netns_ok: None) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{netns.PREFIX}{dead.pid}-0000-a"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netns.remove_stale()
        assert stale not in netns.namespaces()
    finally:
        netns.delete(stale)
