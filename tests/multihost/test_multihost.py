"""Three hosts on one machine (network namespaces, tests/multihost/netns.py):

    A  10.77.0.1  redis-server, SecantusDB (MongoDB wire), SeaweedFS (S3), the API, beat
    B  10.77.0.2  `lucid workers`, its own empty data dir and key dir
    C  10.77.0.3  `lucid workers`, likewise; started only once B is gone

No filesystem is shared with A: blobs go to SeaweedFS, metadata and the ledger to MongoDB,
and B and C are handed their role keys as a deployment hands them secrets. A recording goes
end to end and is restored byte-identical; then, in the middle of a second session, B's
workers are SIGKILLed (or B's link is cut), C takes over the queues, and the session still
ends anchored and byte-identical. Every namespace and process is gone afterwards.

It needs the S3 blob store (lucid.storage.s3, cli.servers.start_seaweedfs) and the ledger
in the metadata store; without either it skips, naming what is missing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from lucid.crypto.keys import (
    LEDGER_KEY,
    LEDGER_PUB,
    RECIPIENT_PUB,
    TOKEN_PUB,
    init_keys,
    load_token_signing_key,
)
from lucid.crypto.tokens import DEFAULT_TENANT, SCOPES, issue_token
from lucid.settings import MIB, Settings
from tests.multihost import netns

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PY = sys.executable
LUCID = str(Path(sys.executable).with_name("lucid"))
CHUNK = 64 * 1024
PORTS = {"redis": 6379, "mongodb": 27017, "s3": 8333, "seaweed": 18333, "api": 8087}
# Credentials of the test SeaweedFS; must match what cli.servers.start_seaweedfs sets up.
S3_KEY = os.environ.get("LUCID_TEST_S3_ACCESS_KEY_ID", "lucid-test")
S3_SECRET = os.environ.get("LUCID_TEST_S3_SECRET_ACCESS_KEY", "lucid-test-secret")
WORKER_KEYS = (LEDGER_KEY, LEDGER_PUB, RECIPIENT_PUB, TOKEN_PUB)  # never recipient.key


def _ledger_in_metadata_store() -> bool:
    # The file ledger lives in LUCID_DATA_DIR; with it, B and C would each sign into a
    # ledger of their own that A never reads. The DB-backed ledger (h10) names itself
    # in the settings or in lucid.integrity.ledger; the lead adjusts this check on merge.
    if "ledger_backend" in Settings.model_fields:
        return True
    from lucid.integrity import ledger

    return any("mongo" in name.lower() or "metadata" in name.lower() for name in dir(ledger))


def _missing() -> str | None:
    if importlib.util.find_spec("lucid.storage.s3") is None:
        return "lucid.storage.s3 (the S3 blob store, BLOB_BACKEND=s3) is not in this tree"
    from cli import servers

    if not hasattr(servers, "start_seaweedfs"):
        return "cli.servers.start_seaweedfs is not in this tree"
    if not _ledger_in_metadata_store():
        return "the ledger is a file in LUCID_DATA_DIR: hosts without A's disk cannot share it"
    return None


@dataclass
class Cluster:
    net: netns.Network
    root: Path
    api: str
    token: str = ""

    def env(self, host: str) -> dict[str, str]:
        """The environment of a Lucid process on `host`: A's servers, the host's own dirs."""
        a = self.net["a"].address
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "TMPDIR")
        return {k: v for k, v in os.environ.items() if k in keep} | {
            "REDIS_URL": f"redis://{a}:{PORTS['redis']}/0",
            "MONGODB_URL": f"mongodb://{a}:{PORTS['mongodb']}/",
            "MONGODB_DATABASE": "lucid_multihost",
            "QUEUE_PREFIX": "mh",
            "BLOB_BACKEND": "s3",
            "S3_ENDPOINT_URL": f"http://{a}:{PORTS['s3']}",
            "S3_BUCKET": "lucid",  # the bucket cli.servers.start_seaweedfs makes
            "S3_ACCESS_KEY_ID": S3_KEY,
            "S3_SECRET_ACCESS_KEY": S3_SECRET,
            "LUCID_DATA_DIR": str(self.root / host / "data"),
            "LUCID_KEY_DIR": str(self.root / host / "keys"),
            "CHUNK_SIZE_MB": str(CHUNK / MIB),
            "COMPRESS_WORKERS": "1",
            "ENCRYPT_WORKERS": "1",
            "HASH_WORKERS": "1",
            "MERKLE_WORKERS": "1",
            "ANCHOR_WORKERS": "1",
            # a dead host's unacked tasks come back in 20 s, not the default 15 min
            "TASK_SOFT_TIME_LIMIT": "8",
            "TASK_TIME_LIMIT": "10",
            "VISIBILITY_TIMEOUT": "20",
            "RECONCILE_AFTER_S": "5",
            "RECONCILE_INTERVAL_S": "2",
        }

    def drive(self, *args: str, timeout: float = 300) -> str:
        """Run tests/multihost/drive.py on host A (the client talks to A's API)."""
        done = self.net["a"].run(
            [PY, str(HERE / "drive.py"), *args],
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "LUCID_TOKEN": self.token},
        )
        assert done.returncode == 0, f"drive {args[0]}: {done.stderr[-2000:]}\n{self.logs()}"
        return done.stdout.strip().splitlines()[-1]

    def start_workers(self, host: str) -> None:
        (self.root / host / "data").mkdir(parents=True)
        self.net[host].spawn(
            [LUCID, "workers"], env=self.env(host), log=self.root / f"{host}-workers.log", cwd=ROOT
        )

    def logs(self) -> str:
        parts = []
        for log in sorted(self.root.rglob("*.log")):
            parts.append(
                f"--- {log.relative_to(self.root)}\n{log.read_text(errors='replace')[-1500:]}"
            )
        return "\n".join(parts)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if reason := netns.unavailable_reason():
        pytest.skip(f"network namespaces cannot be made here: {reason}")
    if reason := _missing():
        pytest.skip(f"needs the S3 blob store and the DB ledger: {reason}")
    with netns.network(["a", "b", "c"]) as net:
        a = net["a"]
        for host in ("a", "b", "c"):
            (tmp_path / host).mkdir()
        init_keys(tmp_path / "a" / "keys")
        for host in ("b", "c"):  # each worker host gets its copy of the role's keys
            (tmp_path / host / "keys").mkdir(mode=0o700)
            for name in WORKER_KEYS:
                shutil.copy2(tmp_path / "a" / "keys" / name, tmp_path / host / "keys" / name)
        admin = issue_token(
            load_token_signing_key(tmp_path / "a" / "keys"),
            subject="multihost-test",
            tenant=DEFAULT_TENANT,
            scopes=SCOPES,
            ttl=timedelta(hours=1),
        )
        cluster = Cluster(net, tmp_path, f"http://{a.address}:{PORTS['api']}", admin)
        env = cluster.env("a")
        (tmp_path / "a" / "data").mkdir()
        servers = tmp_path / "a" / "servers"
        servers.mkdir()
        a.spawn(
            ["redis-server", "--bind", a.address, "--port", str(PORTS["redis"]),
             "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(servers)],
            log=tmp_path / "a-redis.log",
        )  # fmt: skip
        a.spawn(
            [PY, "-m", "secantus", "--host", a.address, "--port", str(PORTS["mongodb"]),
             "--storage-path", str(servers / "mongo"), "--log-level", "WARNING",
             "--noop-heartbeat-seconds", "1"],
            log=tmp_path / "a-secantus.log",
        )  # fmt: skip
        # start_seaweedfs keeps the credentials it finds in its data dir: give it ours
        (servers / "seaweed").mkdir(mode=0o700)
        (servers / "seaweed" / "s3-credentials").write_text(f"{S3_KEY}:{S3_SECRET}\n")
        a.spawn(
            [PY, str(HERE / "seaweed.py"), str(servers / "seaweed"), str(PORTS["seaweed"])],
            env=env, log=tmp_path / "a-seaweed.log", cwd=ROOT,
        )  # fmt: skip
        # SeaweedFS binds A's loopback; its S3 port is forwarded onto A's address
        a.spawn(
            [PY, str(HERE / "forward.py"), a.address, str(PORTS["s3"]),
             "127.0.0.1", str(PORTS["seaweed"])],
            log=tmp_path / "a-forward.log",
        )  # fmt: skip
        for name in ("redis", "mongodb"):
            netns.wait_port(a, a.address, PORTS[name], timeout=60)
        netns.wait_port(a, "127.0.0.1", PORTS["seaweed"], timeout=60)
        a.spawn(
            [PY, "-m", "gunicorn", "api.wsgi:app", "--bind", f"{a.address}:{PORTS['api']}",
             "--workers", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "600"],
            env=env, log=tmp_path / "a-api.log", cwd=ROOT,
        )  # fmt: skip
        a.spawn(
            [PY, "-m", "celery", "-A", "tasks.app", "beat",
             "--schedule", str(tmp_path / "a" / "data" / "celerybeat-schedule")],
            env=env, log=tmp_path / "a-beat.log", cwd=ROOT,
        )  # fmt: skip
        netns.wait_port(a, a.address, PORTS["api"], timeout=60)
        yield cluster


def _session(cluster: Cluster, data: bytes, name: str) -> str:
    path = cluster.root / "a" / name
    path.write_bytes(data)
    return cluster.drive("upload", cluster.api, str(path))


def _assert_anchored_and_identical(cluster: Cluster, sid: str, data: bytes) -> dict[str, object]:
    status = json.loads(cluster.drive("wait", cluster.api, sid, "300", timeout=330))
    assert status["state"] == "STOPPED", f"{status}\n{cluster.logs()}"
    assert status["anchor"]["status"] == "confirmed", status
    out = cluster.root / "a" / f"{sid}.restored"
    assert int(cluster.drive("download", cluster.api, sid, str(out))) == len(data)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    return dict(status)


def _recording(size: int, seed: bytes) -> bytes:
    block = hashlib.sha512(seed).digest()
    return b"".join(
        hashlib.sha512(block + i.to_bytes(4, "big")).digest() for i in range(size // 64)
    )


@pytest.mark.parametrize("fault", ["kill", "cut"])
def test_session_survives_losing_a_worker_host(cluster: Cluster, fault: str) -> None:
    cluster.start_workers("b")
    first = _recording(5 * CHUNK + 640, b"first")
    _assert_anchored_and_identical(cluster, _session(cluster, first, "first.bin"), first)
    # B kept nothing but its logs on its own disk: no blob, no ledger, nothing to lose
    kept = [p for p in (cluster.root / "b" / "data").rglob("*") if p.is_file()]
    assert [p for p in kept if "logs" not in p.parts and "role-keys" not in p.parts] == []

    second = _recording(40 * CHUNK + 64, b"second")
    sid = _session(cluster, second, "second.bin")
    if fault == "kill":
        cluster.net["b"].kill_all()  # SIGKILL, mid-session: tasks taken but not acked
    else:
        cluster.net.cut("b")
    done = json.loads(cluster.drive("status", cluster.api, sid))
    assert done["state"] != "STOPPED" or done["anchor"]["status"] != "confirmed", (
        "the session finished before B was lost: nothing was taken over"
    )
    cluster.start_workers("c")
    final = _assert_anchored_and_identical(cluster, sid, second)
    if fault == "cut":
        # B comes back with stale work in hand: the anchored session does not move
        cluster.net.restore("b")
        time.sleep(5)
        again = json.loads(cluster.drive("status", cluster.api, sid))
        assert again["merkle_root"] == final["merkle_root"], again
        assert again["anchor"] == final["anchor"], again


def test_teardown_left_no_namespace_of_this_run() -> None:
    # runs after the test above in file order: its network (and any stale one) is gone
    mine = f"{netns.PREFIX}{os.getpid()}-"
    assert not [ns for ns in netns.namespaces() if ns.startswith(mine)]
