"""The embedded stack behind `lucid up`: Redis, SecantusDB (and SeaweedFS for
BLOB_BACKEND=s3), a worker group per stage queue, Flower and the API under gunicorn, all
stopped together."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from cli.auth import ADMIN_TOKEN_FILE
from cli.servers import (
    ManagedProcess,
    free_port,
    port_is_open,
    seaweedfs_credentials,
    spawn,
    start_redis,
    start_seaweedfs,
    start_secantus,
)
from lucid.crypto.keys import ensure_keys, load_token_signing_key
from lucid.crypto.roles import make_role_key_dir
from lucid.crypto.tokens import DEFAULT_TENANT, SCOPES, ensure_token_file
from lucid.settings import STAGES, Settings, load_settings
from lucid.storage.datadir import secure_data_dir
from workers.profiles import beat_argv, worker_argv, worker_groups

__all__ = ["ESSENTIAL", "Stack", "StackConfig", "flower_credentials"]

# Without these nothing can make progress: `lucid up` stops if one of them keeps dying.
ESSENTIAL = frozenset({"redis", "secantus", "seaweedfs", "api"})
EMBEDDED_BUCKET = "lucid"
FLOWER_USER = "lucid"
# The embedded stack's admin token: every scope of the default tenant, renewed by `lucid up`
# a day before it expires.
ADMIN_SUBJECT = "lucid-up:admin"
ADMIN_TTL = timedelta(days=365)


def flower_credentials(data_dir: Path) -> Path:
    """DATA_DIR/flower-credentials ("lucid:<random password>", mode 0600), made once.

    Flower's API can shut workers down and revoke tasks, so even on loopback it sits
    behind basic auth; `lucid up` prints where the password is, never the password."""
    path = data_dir / "flower-credentials"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{FLOWER_USER}:{secrets.token_urlsafe(24)}\n")
    return path


def _embedded_s3(env: dict[str, str]) -> bool:
    """BLOB_BACKEND=s3 with no S3_ENDPOINT_URL: the stack starts SeaweedFS for the blobs."""
    return env.get("BLOB_BACKEND") == "s3" and not env.get("S3_ENDPOINT_URL")


@dataclass
class StackConfig:
    data_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = 8087
    flower_port: int | None = 5555
    stages: tuple[str, ...] = STAGES
    api_workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    loglevel: str = "INFO"


class Stack:
    """Starts what the configuration does not already point at, and stops all of it."""

    def __init__(self, config: StackConfig, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.procs: list[ManagedProcess] = []
        self.env: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self._control: Any = None
        self.flower_credentials: Path | None = None
        self.admin_token_path: Path | None = None
        self.admin_token: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.config.api_host}:{self.config.api_port}"

    def flower_auth(self) -> tuple[str, str] | None:
        """(user, password) for Flower's API, when this stack made the credentials."""
        if self.flower_credentials is None:
            return None
        user, _, password = self.flower_credentials.read_text().strip().partition(":")
        return user, password

    def start(self) -> Stack:
        cfg = self.config
        data_dir = secure_data_dir(cfg.data_dir.resolve())
        logs = data_dir / "logs"
        env = {**os.environ, **cfg.extra_env, "LUCID_DATA_DIR": str(data_dir)}
        settings = self.check(env)
        ensure_keys(settings.keys_path)
        self.admin_token_path = data_dir / ADMIN_TOKEN_FILE
        self.admin_token = ensure_token_file(
            self.admin_token_path,
            load_token_signing_key(settings.keys_path),
            subject=ADMIN_SUBJECT,
            tenant=DEFAULT_TENANT,
            scopes=SCOPES,
            ttl=ADMIN_TTL,
        )
        try:
            if not env.get("REDIS_URL"):
                proc, env["REDIS_URL"] = start_redis(data_dir / "redis")
                self.procs.append(proc)
            if not env.get("MONGODB_URL"):
                proc, env["MONGODB_URL"] = start_secantus(data_dir / "secantus")
                self.procs.append(proc)
            if _embedded_s3(env):
                proc, env["S3_ENDPOINT_URL"] = start_seaweedfs(
                    data_dir / "seaweedfs", bucket=env.setdefault("S3_BUCKET", EMBEDDED_BUCKET)
                )
                self.procs.append(proc)
                access, secret = seaweedfs_credentials(data_dir / "seaweedfs")
                env.update(S3_ACCESS_KEY_ID=access, S3_SECRET_ACCESS_KEY=secret)
                self.urls["s3"] = env["S3_ENDPOINT_URL"]
            self.urls.update(redis=env["REDIS_URL"], mongodb=env["MONGODB_URL"])
            self.env = env
            settings = load_settings(env)
            for group in worker_groups(settings, cfg.stages):
                argv = worker_argv(group, loglevel=cfg.loglevel)
                group_env = self._role_env(env, settings, (group.role,))
                self.procs.append(spawn(f"worker-{group.stage}", argv, logs, group_env))
            self.procs.append(self._beat(self._role_env(env, settings, ("seal",)), logs))
            if cfg.flower_port:
                self.procs.append(self._flower(self._role_env(env, settings, ("seal",)), logs))
                self.urls["flower"] = f"http://127.0.0.1:{cfg.flower_port}"
            api_roles = ("api", "restore") if settings.api_decrypts else ("api",)
            self.procs.append(self._api(self._role_env(env, settings, api_roles), logs))
            self.urls["api"] = self.api_url
            self._wait_ready(settings)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _role_env(
        env: dict[str, str], settings: Settings, roles: tuple[str, ...]
    ) -> dict[str, str]:
        """`env` for a process in `roles`: its own key directory holding only its keys."""
        key_dir = make_role_key_dir(settings.keys_path, settings.data_dir / "role-keys", roles)
        return {**env, "LUCID_ROLE": ",".join(roles), "LUCID_KEY_DIR": str(key_dir)}

    def check(self, env: dict[str, str] | None = None) -> Settings:
        """Fail on a bad setting or a taken port before anything is started."""
        cfg = self.config
        env = env or {**os.environ, **cfg.extra_env, "LUCID_DATA_DIR": str(cfg.data_dir.resolve())}
        if _embedded_s3(env):  # start() fills in the SeaweedFS it starts
            env = {**env, "S3_ENDPOINT_URL": "http://127.0.0.1", "S3_BUCKET": EMBEDDED_BUCKET}
        settings = load_settings(env)
        if port_is_open(cfg.api_port, cfg.api_host):
            raise RuntimeError(
                f"expected a free API port, got {cfg.api_port} taken; "
                "pass --port or stop the other server"
            )
        if cfg.flower_port and port_is_open(cfg.flower_port):
            raise RuntimeError(
                f"expected a free Flower port, got {cfg.flower_port} taken; "
                "pass --flower-port (0: no Flower) or stop the other server"
            )
        return settings

    def _api(self, env: dict[str, str], logs: Path) -> ManagedProcess:
        cfg = self.config
        argv = [
            sys.executable, "-m", "gunicorn", "api.wsgi:app",
            "--bind", f"{cfg.api_host}:{cfg.api_port}",
            "--workers", str(cfg.api_workers),
            "--worker-class", "gthread", "--threads", "4",
            "--timeout", "600", "--graceful-timeout", "20",
            "--access-logfile", "-",
        ]  # fmt: skip
        return spawn("api", argv, logs, env)

    def _beat(self, env: dict[str, str], logs: Path) -> ManagedProcess:
        """The periodic reconcile sweep's sender; one per stack (a second is harmless)."""
        schedule = self.config.data_dir.resolve() / "celerybeat-schedule"
        return spawn("beat", beat_argv(schedule, loglevel=self.config.loglevel), logs, env)

    def _flower(self, env: dict[str, str], logs: Path) -> ManagedProcess:
        port = self.config.flower_port or free_port()
        argv = [
            sys.executable, "-m", "celery", "-A", "tasks.app", "flower",
            f"--port={port}", "--address=127.0.0.1",
            f"--db={self.config.data_dir.resolve() / 'flower.db'}", "--persistent=False",
        ]  # fmt: skip
        # Flower's API is a remote control (shut a worker down, revoke, pool resize): behind
        # basic auth even on loopback. /metrics and /healthcheck stay open (read-only).
        flower_env = {k: v for k, v in env.items() if k != "FLOWER_UNAUTHENTICATED_API"}
        if not flower_env.get("FLOWER_BASIC_AUTH"):
            self.flower_credentials = flower_credentials(self.config.data_dir.resolve())
            flower_env["FLOWER_BASIC_AUTH"] = self.flower_credentials.read_text().strip()
        return spawn("flower", argv, logs, flower_env)

    def _wait_ready(self, settings: Settings, timeout: float = 90.0) -> None:
        """Wait until the API is healthy and every stage queue has a worker answering."""
        deadline = time.monotonic() + timeout
        wanted = {f"{stage}@" for stage in self.config.stages}
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if not p.alive()]
            if dead:
                last = dead[0].tail(1).strip()[:200]
                raise RuntimeError(
                    f"{dead[0].name} exited during start-up (code {dead[0].popen.returncode}"
                    f"{', last log line: ' + repr(last) if last else ''}); see {dead[0].log_path}"
                )
            try:
                healthy = httpx.get(self.api_url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy and not (wanted - self._workers_answering()):
                return
            time.sleep(0.25)
        raise RuntimeError(
            "stack did not become ready in time; see logs in " + str(self.config.data_dir / "logs")
        )

    def _workers_answering(self) -> set[str]:
        from celery import Celery

        if self._control is None:
            broker = self.env.get("BROKER_URL") or self.env["REDIS_URL"]
            self._control = Celery("lucid-control", broker=broker)
            # the workers answer on their deployment's own control exchange (QUEUE_PREFIX)
            self._control.conf.control_exchange = load_settings(self.env).prefixed("celery")
        replies = self._control.control.ping(timeout=0.5) or []
        return {name.split("@")[0] + "@" for reply in replies for name in reply}

    def stop(self) -> None:
        """Stop everything we started: API and workers first, then the servers."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
