"""Core micro-benchmark: MB/s of each stage on one core (chunk, compress, encrypt, hash).

python -m bench.core --size-mb 100
"""

from __future__ import annotations

import io
import time

import click

from bench.corpus import corpus_blocks
from bench.work import SESSION, session_public
from lucid.crypto.aead import ChunkContext, encrypt_chunk
from lucid.integrity.leaves import ciphertext_digest_of
from lucid.pipeline.chunking import iter_chunks
from lucid.pipeline.codecs import get_codec

MB = 1e6


def stage_rates(
    data: bytes, chunk_size: int, compression: str, level: int, encryption: str
) -> dict[str, float]:
    """MB/s of input bytes per stage, single-threaded."""
    t = time.perf_counter()
    chunks = list(iter_chunks(io.BytesIO(data), chunk_size))
    rates = {"chunk": len(data) / (time.perf_counter() - t) / MB}
    codec = get_codec(compression, level)
    t = time.perf_counter()
    compressed = [codec.compress(c.data) for c in chunks]
    rates["compress"] = len(data) / (time.perf_counter() - t) / MB
    t = time.perf_counter()
    blobs = [
        encrypt_chunk(
            z, session_public(), ChunkContext(SESSION, c.index, c.final, compression, encryption)
        )
        for z, c in zip(compressed, chunks, strict=True)
    ]
    rates["encrypt"] = sum(map(len, compressed)) / (time.perf_counter() - t) / MB
    t = time.perf_counter()
    for blob in blobs:
        ciphertext_digest_of(blob)
    rates["hash"] = sum(map(len, blobs)) / (time.perf_counter() - t) / MB
    rates["ratio"] = sum(map(len, compressed)) / len(data)
    return rates


@click.command()
@click.option("--size-mb", default=100, show_default=True)
@click.option("--chunk-mb", default=10.0, show_default=True)
@click.option("--compression", default="zstd", show_default=True)
@click.option("--level", default=6, show_default=True)
@click.option("--encryption", default="AES-256-GCM", show_default=True)
def main(size_mb: int, chunk_mb: float, compression: str, level: int, encryption: str) -> None:
    """Print MB/s per stage on a generated corpus (encrypt and hash: MB/s of their input)."""
    data = b"".join(corpus_blocks(size_mb * 1024 * 1024))
    rates = stage_rates(data, int(chunk_mb * 1024 * 1024), compression, level, encryption)
    click.echo(f"corpus {size_mb} MiB, chunks {chunk_mb} MiB, {compression}-{level}, {encryption}")
    for stage in ("chunk", "compress", "encrypt", "hash"):
        click.echo(f"  {stage:9s} {rates[stage]:9.1f} MB/s")
    click.echo(f"  compressed to {rates['ratio']:.1%} of the input")


if __name__ == "__main__":
    main()
