"""GET .../{id}/statistics and GET /api/v1/statistics on the real stack: the numbers agree
with what was uploaded, and `statistics` is never taken for a session id."""

from __future__ import annotations

from pathlib import Path

from cli.client import Client
from lucid.runtime import Runtime
from lucid.settings import STAGES
from tests.integration.conftest import CHUNK
from tests.lucid.conftest import compressible


def test_session_statistics_agree_with_the_upload(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    data = compressible(3 * CHUNK + 2000, seed=70)
    path = tmp_path / "s.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.upload(sid, path)
    client.wait(sid, timeout=120)

    stats = client.statistics(sid)

    chunks = runtime.meta.list_chunks(sid)
    compressed = sum(c["compressed_len"] for c in chunks)
    assert stats["chunks"] == 4
    assert stats["bytes"] == {
        "received": len(data),
        "plaintext": len(data),
        "compressed": compressed,
        "ciphertext": sum(c["ciphertext_len"] for c in chunks),
    }
    assert stats["compression_ratio"] == round(len(data) / compressed, 4)
    assert stats["compression_ratio"] > 2  # text-like bytes
    for stage in ("compress", "encrypt", "hash"):
        assert stats["stages"][stage]["tasks"] >= 4 and stats["stages"][stage]["seconds"] > 0
    assert stats["stages"]["merkle"]["tasks"] >= 1 and stats["stages"]["anchor"]["tasks"] >= 1
    assert stats["seal_to_anchor_seconds"] is not None and stats["seal_to_anchor_seconds"] >= 0
    assert stats["stop_to_seal_seconds"] >= 0 and stats["recording_seconds"] >= 0
    assert stats["throughput_bytes_per_second"] > 0


def test_system_statistics_count_sessions_by_state_and_stored_chunks(
    client: Client, runtime: Runtime
) -> None:
    created = client.create()["session_id"]
    stats = client.statistics()
    for path in ("/api/v1/sessions/statistics",):  # the seeds' path: not a session id
        assert client.http.get(path).json().keys() == stats.keys()
    assert stats["sessions"]["CREATED"] >= 1 and set(stats["sessions"]) >= {"STOPPED", "DESTROYED"}
    assert sum(stats["sessions"].values()) == runtime.meta.sessions.count_documents({})
    hashed = list(runtime.meta.chunks.find({"stage": 3}))
    assert stats["stored"]["chunks"] == len(hashed)
    assert stats["stored"]["ciphertext_bytes"] == sum(c["ciphertext_len"] for c in hashed)
    assert set(stats["stages"]) == set(STAGES)
    assert stats["stages"]["compress"]["workers"] == 2  # COMPRESS_WORKERS of the test stack
    assert all("queued" in numbers for numbers in stats["stages"].values())
    assert client.status(created)["state"] == "CREATED"
