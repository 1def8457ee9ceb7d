"""The per-chunk work with no queue, no HTTP and no database: what the limit runs."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lucid.crypto.aead import ChunkContext, encrypt_chunk
from lucid.integrity.leaves import LeafRecord, ciphertext_digest_of
from lucid.pipeline.codecs import get_codec
from lucid.storage.fs import FileBlobStore

__all__ = ["SESSION", "ChunkTimes", "process_chunk", "session_public", "store_chunk"]

SESSION = "0" * 32
_PUBLIC: bytes | None = None


def session_public() -> bytes:
    """A session public key, made once per process."""
    global _PUBLIC
    if _PUBLIC is None:
        _PUBLIC = X25519PrivateKey.generate().public_key().public_bytes_raw()
    return _PUBLIC


@dataclass
class ChunkTimes:
    compress: float = 0.0
    encrypt: float = 0.0
    hash: float = 0.0


def _leaf_hash(
    index: int, final: bool, plaintext_len: int, compressed_len: int, blob: bytes | memoryview,
    compression: str, encryption: str,
) -> bytes:  # fmt: skip
    """The chunk's leaf hash over its ciphertext `blob`, as the hash stage computes it."""
    return LeafRecord(
        SESSION, index, final, plaintext_len, compressed_len, len(blob), compression,
        encryption, ciphertext_digest_of(blob),
    ).leaf_hash()  # fmt: skip


def process_chunk(
    data: bytes, index: int, final: bool, compression: str, level: int, encryption: str
) -> tuple[bytes, ChunkTimes]:
    """compress → encrypt → hash one chunk; returns its leaf hash and the CPU time per stage."""
    times = ChunkTimes()
    t0 = time.thread_time()
    compressed = get_codec(compression, level).compress(data)
    t1 = time.thread_time()
    ctx = ChunkContext(SESSION, index, final, compression, encryption)
    blob = encrypt_chunk(compressed, session_public(), ctx)
    t2 = time.thread_time()
    leaf_hash = _leaf_hash(index, final, len(data), len(compressed), blob, compression, encryption)
    t3 = time.thread_time()
    times.compress, times.encrypt, times.hash = t1 - t0, t2 - t1, t3 - t2
    return leaf_hash, times


def store_chunk(
    data: bytes, index: int, final: bool, compression: str, level: int, encryption: str,
    blobs: FileBlobStore,
) -> int:  # fmt: skip
    """`process_chunk`'s work as the stages do it at rest: the raw chunk written durably
    (as ingest does before its commit), compressed from its memory map into a blob that is
    not synced, encrypted into a synced blob, hashed from that blob's map, then the raw and
    compressed blobs deleted. No queue, no HTTP, no metadata. Returns the ciphertext's
    length; leaves the ciphertext blob in place."""
    key = f"floor/{index:08d}"
    blobs.put(f"{key}.raw", data)
    with blobs.view(f"{key}.raw") as raw:
        compressed = get_codec(compression, level).compress(raw)
    blobs.put(f"{key}.zst", compressed, durable=False)
    ctx = ChunkContext(SESSION, index, final, compression, encryption)
    with blobs.view(f"{key}.zst") as view:
        blob = encrypt_chunk(view, session_public(), ctx)
    blobs.put(f"{key}.enc", blob)
    with blobs.view(f"{key}.enc") as stored:
        _leaf_hash(index, final, len(data), len(compressed), stored, compression, encryption)
    blobs.delete(f"{key}.raw")
    blobs.delete(f"{key}.zst")
    return len(blob)
