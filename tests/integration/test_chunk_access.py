"""One chunk's record and bytes, and byte ranges of the whole recording, on the real stack:
every byte sent is proven first; the stored ciphertext verifies offline with its proof."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.corpus import corpus_blocks
from cli.client import Client
from lucid.integrity.leaves import LeafRecord, ciphertext_digest_of
from lucid.integrity.merkle import BLAKE3, verify_inclusion
from lucid.runtime import Runtime
from lucid.storage import layout
from tests.integration.conftest import CHUNK
from tests.integration.test_lifecycle_api import SESSIONS

SIZE = 3 * CHUNK + 1000


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, stack: object) -> tuple[str, bytes]:
    """One sealed, anchored session shared by the read-only tests, and its bytes."""
    client = Client(stack.api_url, timeout=120, token=stack.admin_token)  # type: ignore[attr-defined]
    data = b"".join(corpus_blocks(SIZE, 50))
    path = tmp_path_factory.mktemp("rec") / "rec.bin"
    path.write_bytes(data)
    sid: str = client.create({"filename": "rec.bin"})["session_id"]
    client.upload(sid, path)
    assert client.wait(sid, timeout=120)["anchor"]["status"] == "confirmed"
    return sid, data


def test_chunk_record_shows_stage_and_leaf(client: Client, recording: tuple[str, bytes]) -> None:
    sid, _ = recording
    record = client.chunk(sid, 3)
    assert record["index"] == 3 and record["stage"] == 3 and record["final"] is True
    assert record["plaintext_len"] == 1000 and record["held"] is None
    assert len(record["leaf_hash"]) == 64
    assert client.http.get(f"{SESSIONS}/{sid}/chunks/4").status_code == 404
    assert client.http.get(f"{SESSIONS}/{sid}/chunks/x").status_code == 400
    body = client.http.get(f"{SESSIONS}/{sid}/chunks/0?verbose=1").json()
    assert "unknown query parameters verbose" in body["message"]


@pytest.mark.parametrize("index", [0, 1, 3])
def test_chunk_download_is_that_chunks_plaintext(
    client: Client, recording: tuple[str, bytes], index: int
) -> None:
    sid, data = recording
    response = client.http.get(f"{SESSIONS}/{sid}/chunks/{index}/download")
    assert response.status_code == 200, response.text
    assert response.content == data[index * CHUNK : (index + 1) * CHUNK]


def test_ciphertext_form_is_the_stored_blob_and_verifies_offline_with_the_proof(
    client: Client, runtime: Runtime, recording: tuple[str, bytes]
) -> None:
    sid, _ = recording
    response = client.http.get(f"{SESSIONS}/{sid}/chunks/1/download", params={"form": "ciphertext"})
    assert response.status_code == 200, response.text
    assert response.content == runtime.blobs.get(layout.encrypted_key(sid, 1))
    proof = client.proof(sid, 1)
    leaf = LeafRecord.from_dict(proof["leaf"])
    # Offline: the bytes are the ones the leaf commits to, and the leaf is in the root.
    assert ciphertext_digest_of(response.content) == leaf.ciphertext_digest
    assert len(response.content) == leaf.ciphertext_len
    verify_inclusion(
        BLAKE3,
        leaf.leaf_hash(),
        1,
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(client.status(sid)["merkle_root"]),
    )
    assert response.headers["X-Lucid-Leaf-Hash"] == proof["leaf_hash"]
    bad = client.http.get(f"{SESSIONS}/{sid}/chunks/1/download", params={"form": "zip"})
    assert bad.status_code == 400 and "form" in bad.json()["message"]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        (f"bytes={CHUNK - 10}-{CHUNK + 9}", CHUNK - 10, CHUNK + 9),  # across a chunk edge
        (f"bytes={CHUNK + 5}-", CHUNK + 5, SIZE - 1),
        ("bytes=-500", SIZE - 500, SIZE - 1),
        (f"bytes=100-{10 * SIZE}", 100, SIZE - 1),
    ],
)
def test_range_download_answers_206_with_exactly_the_slice(
    client: Client, recording: tuple[str, bytes], header: str, first: int, last: int
) -> None:
    sid, data = recording
    response = client.http.get(f"{SESSIONS}/{sid}/download", headers={"Range": header})
    assert response.status_code == 206, response.text
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.content == data[first : last + 1]


def test_range_outside_the_recording_is_416_and_a_plain_download_advertises_ranges(
    client: Client, recording: tuple[str, bytes]
) -> None:
    sid, data = recording
    response = client.http.get(f"{SESSIONS}/{sid}/download", headers={"Range": f"bytes={SIZE}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"
    plain = client.http.get(f"{SESSIONS}/{sid}/download")
    assert plain.status_code == 200 and plain.headers["Accept-Ranges"] == "bytes"
    assert plain.content == data
    # Not a single byte range: ignored, the whole recording is sent (RFC 9110).
    other = client.http.get(f"{SESSIONS}/{sid}/download", headers={"Range": "bytes=0-1,5-6"})
    assert other.status_code == 200 and other.content == data


def test_tampered_chunk_is_refused_naming_it_before_any_byte(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    data = b"".join(corpus_blocks(2 * CHUNK + 10, 51))
    path = tmp_path / "t.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.upload(sid, path)
    client.wait(sid, timeout=120)
    blob = runtime.settings.blobs_path / layout.encrypted_key(sid, 1)
    os.chmod(blob, 0o600)
    tampered = bytearray(blob.read_bytes())
    tampered[40] ^= 1
    blob.write_bytes(bytes(tampered))

    response = client.http.get(f"{SESSIONS}/{sid}/chunks/1/download")
    assert response.status_code == 409
    body = response.json()
    assert body["chunk_index"] == 1 and "ciphertext_digest" in body["message"]
    ranged = client.http.get(f"{SESSIONS}/{sid}/download", headers={"Range": f"bytes=0-{CHUNK}"})
    assert ranged.status_code == 409 and ranged.json()["chunk_index"] == 1
    # A chunk that is intact, and a range that does not touch the tampered one, still read.
    assert client.http.get(f"{SESSIONS}/{sid}/chunks/0/download").content == data[:CHUNK]
    head = client.http.get(f"{SESSIONS}/{sid}/download", headers={"Range": "bytes=0-99"})
    assert head.status_code == 206 and head.content == data[:100]
    # The ciphertext form hands the stored bytes over as they are: offline checks catch it.
    stored = client.http.get(f"{SESSIONS}/{sid}/chunks/1/download?form=ciphertext")
    assert stored.status_code == 200 and stored.content == bytes(tampered)
    assert ciphertext_digest_of(stored.content).hex() != stored.headers["X-Lucid-Ciphertext-Digest"]


def test_chunk_download_of_an_unsealed_session_is_409(client: Client) -> None:
    sid = client.create()["session_id"]
    response = client.http.get(f"{SESSIONS}/{sid}/chunks/0/download")
    assert response.status_code == 409 and "not sealed" in response.json()["message"]
