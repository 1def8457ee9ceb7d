"""A Runtime on real parts for the core's session, stage and restore tests.

Blobs, keys and the ledger live under `tmp_path`; metadata goes to the per-test database
on the session's SecantusDB server. The helpers drive a session through the same stage
functions the Celery tasks call, in order, without Celery.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymongo
import pytest

from lucid.pipeline import sessions, stages
from lucid.runtime import Runtime
from lucid.settings import load_settings
from lucid.storage.metadata import MetadataStore

CHUNK = 64 * 1024
Db = pymongo.database.Database[dict[str, Any]]
MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def make_runtime(tmp_path: Path, mongo_db: Db) -> MakeRuntime:
    """Build a Runtime with 64 KiB chunks; keyword arguments are extra env variables."""

    def make(**env: str) -> Runtime:
        settings = load_settings(
            {
                "LUCID_DATA_DIR": str(tmp_path),
                "CHUNK_SIZE_MB": str(CHUNK / (1024 * 1024)),
                "MONGODB_URL": "unused",
                **env,
            }
        )
        rt = Runtime(settings)
        store = MetadataStore(mongo_db)
        store.ensure_indexes()
        rt.__dict__["meta"] = store  # Runtime.meta is a cached_property: inject the test db
        return rt

    return make


@pytest.fixture
def rt(make_runtime: MakeRuntime) -> Runtime:
    return make_runtime()


def compressible(size: int, seed: int = 1) -> bytes:
    """Text-like bytes that zstd and gzip shrink a lot."""
    rng = random.Random(seed)
    words = [b"frame", b"pixel", b"cursor", b"window", b"click", b"\n", b"0x1f"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def incompressible(size: int, seed: int = 2) -> bytes:
    return random.Random(seed).randbytes(size)


def record(rt: Runtime, data: bytes) -> tuple[str, list[tuple[int, bool]]]:
    """Create a session and ingest `data` (start, append, stop); return id and the cuts."""
    sid = sessions.create_session(rt, {})["session_id"]
    cuts: list[tuple[int, bool]] = []
    sessions.ingest_recording(rt, sid, io.BytesIO(data), lambda s, i, f: cuts.append((i, f)))
    return sid, cuts


def push_chunks(rt: Runtime, sid: str) -> list[stages.LeafRef]:
    """compress → encrypt → hash every cut chunk, as the per-chunk task chains do."""
    count = int(rt.meta.get_session(sid)["chunk_count"])
    leaves = []
    for i in range(count):
        ref = stages.compress_chunk(rt, sid, i, i == count - 1)
        ref = stages.encrypt_stage(rt, ref)
        leaves.append(stages.hash_chunk(rt, ref))
    return leaves


def sealed_session(rt: Runtime, data: bytes) -> str:
    """A session recorded, pushed through every stage, sealed and anchored."""
    sid, _ = record(rt, data)
    stages.seal_session(rt, sid, push_chunks(rt, sid))
    stages.anchor_session(rt, sid)
    return sid
