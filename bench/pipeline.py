"""The pipeline side of the benchmark: upload over HTTP until the root is anchored,
sampling the peak RSS of the API and of each worker group meanwhile."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

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


class RssSampler(threading.Thread):
    """Peak resident memory per named process tree, sampled every 20 ms."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak: dict[str, float] = dict.fromkeys(roots, 0.0)
        self._stop_event = threading.Event()

    def run(self) -> None:
        procs = {name: psutil.Process(pid) for name, pid in self.roots.items()}
        while not self._stop_event.is_set():
            for name, proc in procs.items():
                try:
                    tree = [proc, *proc.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in tree) / 2**20
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], rss)
            time.sleep(0.02)

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join(5)
        return {k: round(v, 1) for k, v in self.peak.items()}


_METRIC = re.compile(r'^lucid_stage_seconds_total\{stage="(\w+)"\} ([0-9.eE+-]+)$', re.M)


def stage_seconds(api_url: str) -> dict[str, float]:
    text = httpx.get(api_url + "/metrics", timeout=10).text
    return {stage: float(value) for stage, value in _METRIC.findall(text)}


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def measure_pipeline(
    api_url: str, path: Path, rss_roots: dict[str, int] | None = None
) -> PipelineResult:
    """Create a session, PUT the file, wait for the anchor; times from server timestamps."""
    client = Client(api_url)
    before = stage_seconds(api_url)
    sampler = RssSampler(rss_roots or {})
    sampler.start()
    session_id = client.create({"bench": path.name})["session_id"]
    started = time.time()
    client.upload(session_id, path)
    uploaded = time.time()
    status = client.wait(session_id, timeout=3600, interval=0.05)
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
    )


def describe(result: Any) -> dict[str, Any]:
    return dict(result.__dict__)
