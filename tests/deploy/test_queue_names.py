"""QUEUE_PREFIX reaches every name on the broker: settings, celeryconfig's queues, exchange,
routes, beat entry and control channels, the worker command lines, `lucid workers`."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lucid.errors import ConfigError
from lucid.settings import STAGES, load_settings
from workers.profiles import worker_argv, worker_groups

ROOT = Path(__file__).resolve().parents[2]

_DUMP = """
import contextlib
import json
import celeryconfig as c
print(json.dumps({
    "queues": [[q.name, q.exchange.name, q.exchange.type, q.routing_key] for q in c.task_queues],
    "default": [c.task_default_queue, c.task_default_exchange, c.task_default_routing_key],
    "routes": {k: v["queue"] for k, v in c.task_routes.items()},
    "beat": c.beat_schedule["reconcile"]["options"]["queue"],
    "control": [c.control_exchange, c.event_exchange],
}))
"""


def _config(**env: str) -> dict[str, object]:
    # celeryconfig reads the environment once, at import: a process of its own per case
    base = {k: v for k, v in os.environ.items() if k != "QUEUE_PREFIX"}
    out = subprocess.run(
        [sys.executable, "-c", _DUMP], env=base | env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_queue_names_carry_the_prefix() -> None:
    assert load_settings({}).queue_name("compress") == "compress"
    settings = load_settings({"QUEUE_PREFIX": "acme-prod"})
    assert [settings.queue_name(s) for s in STAGES] == [f"acme-prod.{s}" for s in STAGES]
    assert settings.prefixed("lucid") == "acme-prod.lucid"


@pytest.mark.parametrize("bad", ["Acme", "a b", "a.b", "-x", "x" * 33, "a/b"])
def test_a_prefix_that_is_no_safe_name_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="QUEUE_PREFIX"):
        load_settings({"QUEUE_PREFIX": bad})


def test_every_queue_route_and_the_beat_entry_use_the_prefix() -> None:
    conf = _config(QUEUE_PREFIX="acme")
    names = [f"acme.{stage}" for stage in STAGES]
    # one direct exchange of the deployment's own; each queue bound by its own name
    assert conf["queues"] == [[n, "acme.lucid", "direct", n] for n in names]
    assert conf["default"] == ["acme.merkle", "acme.lucid", "acme.merkle"]
    routes = conf["routes"]
    assert isinstance(routes, dict)
    assert set(routes.values()) <= set(names)
    assert routes["lucid.lifecycle.reconcile"] == "acme.merkle"
    assert routes["lucid.integrity.merkle"] == "acme.merkle"
    assert conf["beat"] == "acme.merkle"
    assert conf["control"] == ["acme.celery", "acme.celeryev"]


def test_without_a_prefix_no_queue_hangs_off_the_merkle_exchange() -> None:
    conf = _config()
    assert conf["queues"] == [[s, "lucid", "direct", s] for s in STAGES]
    assert conf["control"] == ["celery", "celeryev"]


def test_worker_groups_consume_the_prefixed_queue() -> None:
    settings = load_settings({"QUEUE_PREFIX": "acme"})
    [group] = worker_groups(settings, ("encrypt",))
    argv = worker_argv(group)
    assert argv[argv.index("-Q") + 1] == "acme.encrypt"
    # the stage stays first in the node name (what the stack waits for), the prefix marks the host
    assert argv[argv.index("-n") + 1] == "encrypt@acme.%h"


def _lucid(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=keep | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_lucid_workers_refuses_an_unknown_stage_in_the_list(tmp_path: Path) -> None:
    result = _lucid("workers", "--stages", "compress,zip", LUCID_DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --stages: expected stages of {', '.join(STAGES)}, got zip"
    ]


def test_lucid_workers_starts_the_listed_and_repeated_stages_on_prefixed_queues(
    tmp_path: Path, redis_url: str, mongodb_url: str
) -> None:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = keep | {
        "LUCID_DATA_DIR": str(tmp_path),
        "REDIS_URL": redis_url,
        "MONGODB_URL": mongodb_url,
        "QUEUE_PREFIX": "wq",
        "COMPRESS_WORKERS": "1",
        "ENCRYPT_WORKERS": "1",
        "HASH_WORKERS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "workers", "--stages", "compress, encrypt",
         "--stage", "hash"],
        env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline().strip() for _ in range(3)]
        # let the last group finish starting: a stop signal racing a spawn is another test's
        time.sleep(2)
    finally:
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        try:
            proc.wait(timeout=90)
        finally:
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
    started = [line.split(":")[0].split()[-1] for line in lines]
    assert started == ["compress", "encrypt", "hash"], lines
    assert all(f"on queue wq.{stage}," in line for stage, line in zip(started, lines, strict=True))
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "worker-compress.log", "worker-encrypt.log", "worker-hash.log"
    ]  # fmt: skip
