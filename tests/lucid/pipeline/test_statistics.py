"""A session's statistics from its chunk records and history; the deployment's totals."""

from __future__ import annotations

from lucid.pipeline.statistics import session_statistics, system_statistics
from lucid.runtime import Runtime
from tests.lucid.conftest import CHUNK, compressible, sealed_session


def test_session_statistics_add_up_to_what_was_recorded(rt: Runtime) -> None:
    data = compressible(2 * CHUNK + 300)
    sid = sealed_session(rt, data)
    times = {"compress": {"tasks": 3.0, "seconds": 0.5}}
    stats = session_statistics(rt, sid, times)
    chunks = rt.meta.list_chunks(sid)
    compressed = sum(c["compressed_len"] for c in chunks)
    assert stats["chunks"] == 3 and stats["stages"] == times
    assert stats["bytes"]["plaintext"] == stats["bytes"]["received"] == len(data)
    assert stats["bytes"]["compressed"] == compressed
    assert stats["bytes"]["ciphertext"] == sum(c["ciphertext_len"] for c in chunks)
    assert stats["compression_ratio"] == round(len(data) / compressed, 4) > 2
    assert stats["seal_to_anchor_seconds"] >= 0 and stats["throughput_bytes_per_second"] > 0


def test_system_statistics_count_states_and_stored_chunks(rt: Runtime) -> None:
    sid = sealed_session(rt, compressible(CHUNK + 1))
    queues = {"compress": {"tasks": 1.0, "seconds": 0.1, "queued": 0.0}}
    stats = system_statistics(rt, queues, {"compress": 4})
    assert stats["sessions"]["STOPPED"] == 1
    stored = sum(c["ciphertext_len"] for c in rt.meta.list_chunks(sid))
    assert stats["stored"] == {"chunks": 2, "ciphertext_bytes": stored}
    assert stats["stages"]["compress"] == {"workers": 4, "tasks": 1.0, "seconds": 0.1,
                                           "queued": 0.0}  # fmt: skip
