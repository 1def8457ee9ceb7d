"""Chunk buffers reused across requests: the pool itself, and ingest on the real stores
storing exactly the recorded bytes from buffers that still hold an earlier request's."""

from __future__ import annotations

import threading

from lucid.pipeline.buffers import POOL, BufferPool
from lucid.runtime import Runtime
from tests.lucid.conftest import CHUNK, compressible
from tests.lucid.pipeline.session_helpers import (
    Cuts,
    active_session,
    append_data,
    seal_and_restore,
)


def test_a_given_buffer_is_taken_again_and_sizes_do_not_mix() -> None:
    pool = BufferPool(keep=2)
    first = pool.take(16)
    pool.give(first)
    pool.give(first)  # twice is still once
    assert pool.idle(16) == 1
    assert pool.take(32) is not first and len(pool.take(32)) == 32
    assert pool.take(16) is first
    assert pool.idle(16) == 0


def test_the_pool_keeps_at_most_keep_idle_buffers() -> None:
    pool = BufferPool(keep=2)
    for buf in [pool.take(8) for _ in range(5)]:
        pool.give(buf)
    assert pool.idle(8) == 2


def test_threads_never_share_a_taken_buffer() -> None:
    pool = BufferPool(keep=4)
    taken: list[bytearray] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            buf = pool.take(8)
            with lock:
                assert all(b is not buf for b in taken)
                taken.append(buf)
            with lock:
                taken.remove(buf)
            pool.give(buf)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.idle(8) <= 4


def test_appends_into_reused_buffers_full_of_old_bytes_store_exactly_the_recording(
    rt: Runtime,
) -> None:
    # Buffers left by "another session": every byte 0xff. Ingest must never let one through.
    stale = [POOL.take(CHUNK) for _ in range(POOL.keep)]
    for buf in stale:
        buf[:] = b"\xff" * CHUNK
        POOL.give(buf)
    sid = active_session(rt)
    data = compressible(3 * CHUNK + 1234)
    pieces = [100, CHUNK // 3, 2 * CHUNK, CHUNK - 100 - CHUNK // 3 + 1000, 234]
    assert sum(pieces) == len(data)
    cuts: Cuts = []
    offset = 0
    for size in pieces:
        append_data(rt, sid, data[offset : offset + size], cuts)
        offset += size
        assert POOL.idle(CHUNK) >= 1  # the request gave its buffers back
    assert seal_and_restore(rt, sid) == data


def test_a_request_fills_a_pooled_buffer_and_gives_it_back(rt: Runtime) -> None:
    sid = active_session(rt)
    while POOL.idle(CHUNK):
        POOL.take(CHUNK)
    mark = bytearray(CHUNK)
    POOL.give(mark)
    append_data(rt, sid, b"y" * 10, [])
    assert mark[:10] == b"y" * 10  # the request read its body into the pooled buffer
    assert POOL.idle(CHUNK) == 1 and POOL.take(CHUNK) is mark
