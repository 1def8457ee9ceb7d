"""The embedded stack behind `lucid up`: Redis, SecantusDB, a worker group per stage
queue, Flower and the API under gunicorn, all stopped together."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cli.servers import ManagedProcess, free_port, port_is_open, spawn, start_redis, start_secantus
from lucid.datadir import secure_data_dir
from lucid.keys import ensure_keys
from lucid.settings import STAGES, Settings, load_settings
from workers.profiles import worker_argv, worker_groups

__all__ = ["Stack", "StackConfig"]


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

    @property
    def api_url(self) -> str:
        return f"http://{self.config.api_host}:{self.config.api_port}"

    def start(self) -> Stack:
        cfg = self.config
        data_dir = secure_data_dir(cfg.data_dir.resolve())
        logs = data_dir / "logs"
        env = {**os.environ, **cfg.extra_env, "LUCID_DATA_DIR": str(data_dir)}
        settings = load_settings(env)  # fail fast on bad settings, before starting anything
        ensure_keys(settings.keys_path)
        try:
            if not env.get("REDIS_URL"):
                proc, env["REDIS_URL"] = start_redis(data_dir / "redis")
                self.procs.append(proc)
            if not env.get("MONGODB_URL"):
                proc, env["MONGODB_URL"] = start_secantus(data_dir / "secantus")
                self.procs.append(proc)
            self.urls.update(redis=env["REDIS_URL"], mongodb=env["MONGODB_URL"])
            self.env = env
            settings = load_settings(env)
            for group in worker_groups(settings, cfg.stages):
                argv = worker_argv(group, loglevel=cfg.loglevel)
                self.procs.append(spawn(f"worker-{group.stage}", argv, logs, env))
            if cfg.flower_port:
                self.procs.append(self._flower(env, logs))
                self.urls["flower"] = f"http://127.0.0.1:{cfg.flower_port}"
            self.procs.append(self._api(env, logs))
            self.urls["api"] = self.api_url
            self._wait_ready(settings)
        except BaseException:
            self.stop()
            raise
        return self

    def _api(self, env: dict[str, str], logs: Path) -> ManagedProcess:
        cfg = self.config
        if port_is_open(cfg.api_port, cfg.api_host):
            raise RuntimeError(
                f"port {cfg.api_port} is taken; pass --port or stop the other server"
            )
        argv = [
            sys.executable, "-m", "gunicorn", "api.wsgi:app",
            "--bind", f"{cfg.api_host}:{cfg.api_port}",
            "--workers", str(cfg.api_workers),
            "--worker-class", "gthread", "--threads", "4",
            "--timeout", "600", "--graceful-timeout", "20",
            "--access-logfile", "-",
        ]  # fmt: skip
        return spawn("api", argv, logs, env)

    def _flower(self, env: dict[str, str], logs: Path) -> ManagedProcess:
        port = self.config.flower_port or free_port()
        argv = [
            sys.executable, "-m", "celery", "-A", "tasks.app", "flower",
            f"--port={port}", "--address=127.0.0.1",
            f"--db={self.config.data_dir.resolve() / 'flower.db'}", "--persistent=False",
        ]  # fmt: skip
        # Bound to loopback only; the embedded default lets local tools read Flower's API.
        return spawn("flower", argv, logs, {**env, "FLOWER_UNAUTHENTICATED_API": "true"})

    def _wait_ready(self, settings: Settings, timeout: float = 90.0) -> None:
        """Wait until the API is healthy and every stage queue has a worker answering."""
        deadline = time.monotonic() + timeout
        wanted = {f"{stage}@" for stage in self.config.stages}
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if not p.alive()]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited during start-up:\n{dead[0].tail()}")
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
