"""End to end, tampering and redelivery with the blobs in S3 (SeaweedFS).

The backend-agnostic tests are the filesystem suite's own, imported so they run here
against this folder's S3 stack; tampering needs a different hand on the stored object.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.main import cli
from cli.stack import Stack
from lucid.runtime import Runtime
from lucid.storage import layout
from lucid.storage.s3 import S3BlobStore
from tests.integration.conftest import CHUNK
from tests.integration.test_pipeline_end_to_end import (
    test_multi_chunk_session_is_anchored_restored_and_proven,
    test_plaintext_does_not_stay_at_rest_after_sealing,
)
from tests.integration.test_tamper_and_redelivery import (
    test_killed_worker_chunk_is_redelivered_and_root_unchanged,
)

__all__ = [
    "test_killed_worker_chunk_is_redelivered_and_root_unchanged",
    "test_multi_chunk_session_is_anchored_restored_and_proven",
    "test_plaintext_does_not_stay_at_rest_after_sealing",
]


def test_the_stack_stores_its_blobs_in_the_bucket(runtime: Runtime) -> None:
    assert isinstance(runtime.blobs, S3BlobStore)
    assert not runtime.settings.blobs_path.exists()


def _flip_byte_in_object(store: S3BlobStore, key: str, offset: int) -> None:
    """Overwrite the object without the write-once condition, as someone with bucket
    access could."""
    data = bytearray(store.get(key))
    data[offset] ^= 0x01
    store.client.put_object(Bucket=store.bucket, Key=key, Body=bytes(data))


def test_tampered_stored_chunk_is_caught_by_get_and_verify(
    stack: Stack, client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    data = b"".join(corpus_blocks(5 * CHUNK, seed=11))
    path = tmp_path / "rec.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.upload(sid, path)
    assert client.wait(sid, timeout=120)["state"] == "STOPPED"
    assert isinstance(runtime.blobs, S3BlobStore)
    _flip_byte_in_object(runtime.blobs, layout.encrypted_key(sid, 3), 100)

    api = ["--api", str(client.http.base_url), "--token", str(stack.admin_token)]
    out = tmp_path / "out.bin"
    got = CliRunner().invoke(cli, ["get", sid, "-o", str(out), *api])
    assert got.exit_code != 0
    assert "chunk 3" in got.output
    assert not out.exists()

    verified = CliRunner().invoke(cli, ["verify", sid, *api])
    assert verified.exit_code != 0
    assert "chunk 3" in verified.output
