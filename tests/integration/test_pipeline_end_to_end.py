"""A session pushed through the real stack: HTTP in, per-stage queues, chord, anchor, out."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.corpus import corpus_blocks
from cli.client import Client
from cli.stack import Stack
from lucid.integrity.leaves import LeafRecord
from lucid.integrity.merkle import BLAKE3, verify_inclusion
from lucid.runtime import Runtime
from tests.integration.conftest import CHUNK


def _recording(size: int, seed: int) -> bytes:
    return b"".join(corpus_blocks(size, seed))


def _submit(client: Client, tmp_path: Path, data: bytes, name: str = "rec.bin") -> dict[str, Any]:
    path = tmp_path / name
    path.write_bytes(data)
    sid = client.create({"filename": name})["session_id"]
    client.upload(sid, path)
    return client.wait(sid, timeout=120)


def test_multi_chunk_session_is_anchored_restored_and_proven(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    data = _recording(10 * CHUNK + 12345, seed=1)
    status = _submit(client, tmp_path, data)

    assert status["state"] == "STOPPED", status
    assert status["chunk_count"] == 11
    assert status["chunks"] == {"received": 11, "compressed": 11, "encrypted": 11, "hashed": 11}
    assert status["anchor"]["status"] == "confirmed"

    out = tmp_path / "restored.bin"
    assert client.download(status["session_id"], out) == len(data)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()

    root = bytes.fromhex(status["merkle_root"])
    for index in range(11):
        proof = client.proof(status["session_id"], index)
        leaf = LeafRecord.from_dict(proof["leaf"])
        assert leaf.index == index and leaf.final == (index == 10)
        verify_inclusion(
            BLAKE3, leaf.leaf_hash(), index, 11, [bytes.fromhex(h) for h in proof["proof"]], root
        )

    ledger = runtime.ledger  # the shared store's ledger, as the API reads it
    entry = ledger.find(status["session_id"])
    assert entry is not None and entry.root == status["merkle_root"] and entry.tree_size == 11
    assert ledger.verify() >= 1
    code, report = client.verify(status["session_id"])
    assert code == 200 and report["ok"] and report["chunks_verified"] == 11


def test_plaintext_does_not_stay_at_rest_after_sealing(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    status = _submit(client, tmp_path, _recording(3 * CHUNK, seed=2))
    keys = list(runtime.blobs.keys(f"sessions/{status['session_id']}/"))
    # Ciphertext, and the sealed leaf list (lengths and ciphertext digests, no plaintext).
    assert keys and all("/enc/" in k or k.endswith("/leaves.jsonl") for k in keys), keys


def test_live_session_appended_in_pieces_covers_exactly_what_was_sent(
    client: Client, tmp_path: Path
) -> None:
    data = _recording(5 * CHUNK + 777, seed=3)
    sid = client.create()["session_id"]
    http = client.http
    assert http.post(f"/api/v1/sessions/{sid}/start").status_code == 200
    pieces = [
        data[:1000],
        data[1000 : 3 * CHUNK + 5],
        data[3 * CHUNK + 5 : 4 * CHUNK],
        data[4 * CHUNK :],
    ]
    offset = 0
    for piece in pieces:
        headers = {"Upload-Offset": str(offset)}
        response = http.post(f"/api/v1/sessions/{sid}/data", content=piece, headers=headers)
        assert response.status_code == 202, response.text
        offset += len(piece)
        assert response.headers["Upload-Offset"] == str(offset)
    assert http.post(f"/api/v1/sessions/{sid}/stop").status_code == 202
    status = client.wait(sid, timeout=120)
    assert status["state"] == "STOPPED" and status["chunk_count"] == 6
    out = tmp_path / "live.bin"
    client.download(sid, out)
    assert out.read_bytes() == data


def test_two_sessions_at_once_do_not_mix(client: Client, stack: Stack, tmp_path: Path) -> None:
    datas = [_recording(6 * CHUNK + 1, seed=4), _recording(4 * CHUNK + 99, seed=5)]
    results: list[dict[str, Any]] = [{}, {}]

    def run(i: int) -> None:
        results[i] = _submit(
            Client(stack.api_url, token=stack.admin_token), tmp_path, datas[i], f"r{i}.bin"
        )

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert results[0]["merkle_root"] != results[1]["merkle_root"]
    for i, data in enumerate(datas):
        out = tmp_path / f"out{i}.bin"
        client.download(results[i]["session_id"], out)
        assert out.read_bytes() == data


def test_zero_byte_recording_is_a_valid_one_chunk_session(client: Client, tmp_path: Path) -> None:
    status = _submit(client, tmp_path, b"")
    assert status["state"] == "STOPPED" and status["chunk_count"] == 1
    out = tmp_path / "empty.bin"
    assert client.download(status["session_id"], out) == 0


def test_flower_shows_a_worker_for_every_stage_queue(stack) -> None:  # type: ignore[no-untyped-def]
    response = httpx.get(
        stack.urls["flower"] + "/api/workers?refresh=1", auth=stack.flower_auth(), timeout=30
    )
    assert response.status_code == 200
    queues = {q["name"] for w in response.json().values() for q in w.get("active_queues", [])}
    assert {"compress", "encrypt", "hash", "merkle", "anchor"} <= queues


def test_flower_turns_task_events_on_and_sees_the_pipeline_tasks(  # type: ignore[no-untyped-def]
    stack, client: Client, tmp_path: Path
) -> None:
    # Workers start with events off; Flower enables them every 5 s while it runs.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _submit(client, tmp_path, _recording(CHUNK + 1, seed=9))
        tasks = httpx.get(
            stack.urls["flower"] + "/api/tasks",
            params={"taskname": "lucid.compress"},
            auth=stack.flower_auth(),
            timeout=30,
        ).json()
        if tasks:
            return
        time.sleep(1)
    pytest.fail("Flower saw no lucid.compress task within 60 s: worker events stayed off")
