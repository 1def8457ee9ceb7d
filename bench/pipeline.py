"""The pipeline side of the benchmark: upload over HTTP until the root is anchored,
sampling the peak RSS of the API and of each worker group meanwhile."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psutil

from cli.client import Client

__all__ = ["PipelineResult", "RssSampler", "measure_pipeline"]


@dataclass
class PipelineResult:
    mbps: float
    seconds: float
    upload_s: float
    seal_to_anchor_s: float
    chunks: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    return [proc, *proc.children(recursive=True)]


def _cpu(proc: psutil.Process, *, tree: bool = True) -> float:
    total = 0.0
    for p in _tree(proc) if tree else [proc]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class RssSampler(threading.Thread):
    """Peak resident memory (sampled every 20 ms) and CPU seconds per named process tree."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = {**roots, "bench-client": psutil.Process().pid}
        self.peak: dict[str, float] = dict.fromkeys(self.roots, 0.0)
        self._procs = {name: psutil.Process(pid) for name, pid in self.roots.items()}
        # The stack's processes are children of this one: count only its own CPU.
        self._own = {"bench-client"}
        self._cpu_start = {n: _cpu(p, tree=n not in self._own) for n, p in self._procs.items()}
        self.cpu: dict[str, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        trees = {name: _tree(p) for name, p in self._procs.items()}
        while not self._stop_event.wait(0.1):
            for name, tree in trees.items():
                rss = 0
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        rss += p.memory_info().rss
                self.peak[name] = max(self.peak[name], rss / 2**20)

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join(5)
        self.cpu = {
            n: round(_cpu(p, tree=n not in self._own) - self._cpu_start[n], 2)
            for n, p in self._procs.items()
        }
        shown = ("api", "worker-")
        return {k: round(v, 1) for k, v in self.peak.items() if k.startswith(shown)}


_METRIC = re.compile(r'^lucid_stage_seconds_total\{stage="(\w+)"\} ([0-9.eE+-]+)$', re.M)


def stage_seconds(api_url: str) -> dict[str, float]:
    text = httpx.get(api_url + "/metrics", timeout=10).text
    return {stage: float(value) for stage, value in _METRIC.findall(text)}


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _warm_up(client: Client, path: Path) -> None:
    path.write_bytes(b"warm" * 1024)
    for _ in range(2):
        session_id = client.create({"bench": "warm-up"})["session_id"]
        client.upload(session_id, path)
        client.wait(session_id, timeout=120, interval=0.05)
    path.unlink()


def measure_pipeline(
    api_url: str,
    path: Path,
    rss_roots: dict[str, int] | None = None,
    token: str | None = None,
) -> PipelineResult:
    """Create a session, PUT the file, wait for the anchor; times from server timestamps.

    A one-chunk session goes through first, so every worker process is warm, as in a
    stack that has been running.
    """
    client = Client(api_url, token=token)
    _warm_up(client, path.parent / "warm-up.bin")
    before = stage_seconds(api_url)
    sampler = RssSampler(rss_roots or {})
    sampler.start()
    session_id = client.create({"bench": path.name})["session_id"]
    started = time.time()
    client.upload(session_id, path)
    uploaded = time.time()
    # Times come from server timestamps; polling only adds load, so poll slowly.
    status = client.wait(session_id, timeout=3600, interval=0.5)
    peaks = sampler.stop()
    if status["state"] == "ERROR":
        raise RuntimeError(f"session failed: {status['error']}")
    anchored = _ts(status["anchor_at"])
    after = stage_seconds(api_url)
    size = path.stat().st_size
    return PipelineResult(
        mbps=size / (anchored - started) / 1e6,
        seconds=anchored - started,
        upload_s=uploaded - started,
        seal_to_anchor_s=anchored - uploaded,
        chunks=int(status["chunk_count"]),
        stage_seconds={k: round(after.get(k, 0.0) - before.get(k, 0.0), 3) for k in after},
        peak_rss_mb=peaks,
        cpu_s=sampler.cpu,
    )
