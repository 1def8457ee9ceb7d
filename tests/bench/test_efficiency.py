"""The benchmark's parts: the efficiency figures, the corpus, the uploader's auth, the
at-rest floor."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from bench.corpus import corpus_blocks, write_corpus
from bench.efficiency import cpu_report
from bench.growth import growth
from bench.limit import measure_floor
from bench.upload import auth_headers
from bench.work import SESSION, session_public, store_chunk
from lucid.crypto.aead import ChunkContext, encrypt_chunk
from lucid.pipeline.codecs import get_codec
from lucid.storage.fs import FileBlobStore


def test_efficiency_is_the_limit_cpu_over_the_stack_cpu_without_the_client() -> None:
    cpu = {"api": 1.0, "worker-compress": 2.0, "secantus": 1.0, "bench-client": 5.0}
    report = cpu_report(cpu, limit_cpu_s=3.0, size_bytes=100_000_000)
    assert report["stack_cpu_s"] == 4.0
    assert report["client_cpu_s"] == 5.0
    assert report["efficiency"] == 0.75
    assert report["groups"]["worker-compress"] == {"cpu_s": 2.0, "cpu_ms_per_mb": 20.0}
    assert list(report["groups"]) == ["worker-compress", "api", "secantus"]  # largest first
    assert "bench-client" not in report["groups"]


def test_a_stack_that_spent_nothing_has_no_efficiency() -> None:
    assert cpu_report({"bench-client": 1.0}, 1.0, 1_000_000)["efficiency"] is None


def test_the_corpus_is_deterministic_and_mixes_incompressible_and_compressible_blocks() -> None:
    blocks = list(corpus_blocks(40 * 2**20, seed=3))
    assert blocks == list(corpus_blocks(40 * 2**20, seed=3))
    assert sum(map(len, blocks)) == 40 * 2**20
    ratios = [len(zlib.compress(b, 1)) / len(b) for b in blocks]
    assert max(ratios) > 0.95  # video
    assert min(ratios) < 0.3  # frames, text, events
    assert any(b.startswith(b"\x00\x00\x00\x01") for b in blocks)  # NAL start codes


def test_auth_comes_from_the_token_then_the_environment_then_the_token_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LUCID_TOKEN", raising=False)
    monkeypatch.delenv("LUCID_TOKEN_FILE", raising=False)
    assert auth_headers() == {}
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("LUCID_TOKEN_FILE", str(token_file))
    assert auth_headers() == {"Authorization": "Bearer from-file"}
    monkeypatch.setenv("LUCID_TOKEN", "from-env")
    assert auth_headers() == {"Authorization": "Bearer from-env"}
    assert auth_headers("given") == {"Authorization": "Bearer given"}


def test_the_floor_splits_the_stack_cpu_into_storage_and_the_rest() -> None:
    cpu = {"api": 1.0, "worker-compress": 3.0, "bench-client": 5.0}
    report = cpu_report(cpu, limit_cpu_s=2.4, size_bytes=100_000_000, floor_cpu_s=3.0)
    assert report["floor_cpu_s"] == 3.0
    assert report["floor_efficiency"] == 0.8
    assert report["beyond_floor_cpu_s"] == 1.0
    assert "floor_cpu_s" not in cpu_report(cpu, 2.4, 100_000_000)  # live runs have no floor


def test_a_floor_chunk_is_stored_as_the_stages_store_it(tmp_path: Path) -> None:
    data = b"".join(corpus_blocks(3 * 2**20, seed=5))
    blobs = FileBlobStore(tmp_path / "blobs")
    length = store_chunk(data, 4, True, "zstd", 6, "AES-256-GCM", blobs)
    assert list(blobs.keys("floor/")) == ["floor/00000004.enc"]  # raw and compressed gone
    compressed = get_codec("zstd", 6).compress(data)
    ctx = ChunkContext(SESSION, 4, True, "zstd", "AES-256-GCM")
    assert length == blobs.size("floor/00000004.enc")
    assert length == len(encrypt_chunk(compressed, session_public(), ctx))


def test_the_floor_measures_every_chunk_and_leaves_nothing_behind(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus.bin", 3 * 2**20, seed=5)
    floor = measure_floor(corpus, 2**20, "zstd", 3, "AES-256-GCM", tmp_path / "floor", 2)
    assert floor.cpu_s > 0 and floor.mbps > 0 and floor.processes == 2
    assert not (tmp_path / "floor").exists()


def test_growth_writes_its_files_only_where_asked() -> None:
    # A quick records-only try must not overwrite the committed docs/benchmarks tables.
    out = next(p for p in growth.params if p.name == "out")
    assert out.default is None
