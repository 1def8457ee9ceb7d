"""The in-process limit: the same chunk work on a plain process pool, one process per core."""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.work import process_chunk

__all__ = ["LimitResult", "measure_limit"]


@dataclass
class LimitResult:
    mbps: float
    seconds: float
    processes: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU-seconds of the warm pool's processes on the input


def _run(
    path: str, offset: int, length: int, index: int, final: bool, comp: str, level: int, enc: str
) -> tuple[float, float, float]:
    with open(path, "rb") as f:  # each process reads its own chunk: no pickled 10 MiB args
        f.seek(offset)
        data = f.read(length)
    _, t = process_chunk(data, index, final, comp, level, enc)
    return t.compress, t.encrypt, t.hash


def measure_limit(
    path: Path, chunk_size: int, compression: str, level: int, encryption: str,
    processes: int | None = None,
) -> LimitResult:  # fmt: skip
    """Wall time and CPU to push every chunk of `path` through compress → encrypt → hash.

    Stage times are CPU-seconds of the pool process that ran them (thread CPU time), so
    a busy machine does not inflate them.
    """
    procs = processes or os.cpu_count() or 1
    size = path.stat().st_size
    count = max(1, -(-size // chunk_size))
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_warm, range(procs)))
        pool_cpu = _children_cpu()
        started = time.perf_counter()
        futures = [
            pool.submit(
                _run,
                str(path),
                i * chunk_size,
                min(chunk_size, size - i * chunk_size),
                i,
                i == count - 1,
                compression,
                level,
                encryption,
            )
            for i in range(count)
        ]
        times = [f.result() for f in futures]
        seconds = time.perf_counter() - started
        cpu = _children_cpu() - pool_cpu
    split = {
        stage: sum(t[k] for t in times) for k, stage in enumerate(("compress", "encrypt", "hash"))
    }
    return LimitResult(size / seconds / 1e6, seconds, procs, split, cpu)


def _children_cpu() -> float:
    """User + system CPU-seconds of this process's live children (the pool)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system
    return total


def _warm(_: int) -> None:
    """Import and key set-up happen before the clock starts."""
    process_chunk(b"warm", 0, True, "zstd", 1, "AES-256-GCM")
