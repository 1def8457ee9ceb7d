"""The in-process limit: the same chunk work on a plain process pool, one process per core;
and its at-rest floor: that work as the stages store it, through the file blob store."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.work import process_chunk, store_chunk
from lucid.storage.fs import FileBlobStore

__all__ = ["LimitResult", "measure_floor", "measure_limit"]


@dataclass
class LimitResult:
    mbps: float
    seconds: float
    processes: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU-seconds of the warm pool's processes on the input


@dataclass(frozen=True)
class _Chunk:
    path: str
    offset: int
    length: int
    index: int
    final: bool
    compression: str
    level: int
    encryption: str

    def read(self) -> bytes:
        with open(self.path, "rb") as f:  # each process reads its own chunk: no pickled bytes
            f.seek(self.offset)
            return f.read(self.length)


def _process(c: _Chunk) -> tuple[float, ...]:
    _, t = process_chunk(c.read(), c.index, c.final, c.compression, c.level, c.encryption)
    return t.compress, t.encrypt, t.hash


def _store(root: str, c: _Chunk) -> tuple[float, ...]:
    blobs = FileBlobStore(Path(root))
    store_chunk(c.read(), c.index, c.final, c.compression, c.level, c.encryption, blobs)
    return ()  # no per-stage split


def _measure(
    path: Path, chunk_size: int, compression: str, level: int, encryption: str,
    job: Callable[[_Chunk], tuple[float, ...]], processes: int | None,
) -> LimitResult:  # fmt: skip
    """`job` over every chunk of `path` on a warm pool; its per-chunk stage CPU-seconds
    (compress, encrypt, hash) summed, when it returns them."""
    procs = processes or os.cpu_count() or 1
    size = path.stat().st_size
    count = max(1, -(-size // chunk_size))
    chunks = [
        _Chunk(
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
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_warm, range(procs)))
        pool_cpu = _children_cpu()
        started = time.perf_counter()
        times = [f.result() for f in [pool.submit(job, chunk) for chunk in chunks]]
        seconds = time.perf_counter() - started
        cpu = _children_cpu() - pool_cpu
    stages = ("compress", "encrypt", "hash") if any(times) else ()
    split = {stage: sum(t[k] for t in times) for k, stage in enumerate(stages)}
    return LimitResult(size / seconds / 1e6, seconds, procs, split, cpu)


def measure_limit(
    path: Path, chunk_size: int, compression: str, level: int, encryption: str,
    processes: int | None = None,
) -> LimitResult:  # fmt: skip
    """Wall time and CPU to push every chunk of `path` through compress → encrypt → hash.

    Stage times are CPU-seconds of the pool process that ran them (thread CPU time), so
    a busy machine does not inflate them.
    """
    return _measure(path, chunk_size, compression, level, encryption, _process, processes)


def measure_floor(
    path: Path, chunk_size: int, compression: str, level: int, encryption: str, root: Path,
    processes: int | None = None,
) -> LimitResult:  # fmt: skip
    """The limit's work as the stages store it (`bench.work.store_chunk`): every chunk's
    raw, compressed and ciphertext blobs written under `root` (removed afterwards), each
    stage reading its input back from the blob's memory map. What any durable on-disk
    pipeline spends before its queue, HTTP and metadata; no per-stage split."""
    try:
        job = functools.partial(_store, str(root))
        return _measure(path, chunk_size, compression, level, encryption, job, processes)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
