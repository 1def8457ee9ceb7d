"""Chunk buffers reused from one request to the next, per process.

A fresh 10 MiB `bytearray` costs about 6.6 CPU-ms on this machine: the kernel maps and
zeroes 2,560 pages as they are first touched. A live recorder's 64 KiB append needs far
less CPU than that for everything else it does, so every request allocating its own chunk
buffer was most of a live append's cost in the API. A reused buffer is already mapped.

A reused buffer still holds an earlier request's bytes (possibly another session's):
ingest only ever reads back the range it filled, so that is safe, and zeroing it again
would cost what the pool saves.
"""

from __future__ import annotations

import threading

__all__ = ["POOL", "BufferPool"]


class BufferPool:
    """At most `keep` idle buffers per size; `take` hands one out (or makes one), `give`
    takes it back once nothing refers to it any more."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._idle: dict[int, list[bytearray]] = {}
        self._lock = threading.Lock()

    def take(self, size: int) -> bytearray:
        with self._lock:
            idle = self._idle.get(size)
            if idle:
                return idle.pop()
        return bytearray(size)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            idle = self._idle.setdefault(len(buf), [])
            if len(idle) < self.keep and all(b is not buf for b in idle):
                idle.append(buf)

    def idle(self, size: int) -> int:
        """How many buffers of `size` wait to be reused."""
        with self._lock:
            return len(self._idle.get(size, ()))


# One per process: requests on every thread of an API worker share it.
POOL = BufferPool()
