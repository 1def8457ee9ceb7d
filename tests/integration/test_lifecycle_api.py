"""PUT and DELETE /api/v1/sessions/{id} on the real stack: editable metadata, legal hold,
crypto-shredding and its tombstone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.corpus import corpus_blocks
from cli.client import ApiError, Client
from lucid.runtime import Runtime
from tests.integration.conftest import CHUNK

SESSIONS = "/api/v1/sessions"


def sealed(client: Client, tmp_path: Path, size: int = 3 * CHUNK + 777, seed: int = 40) -> str:
    """A session uploaded, sealed and anchored; its id."""
    path = tmp_path / f"rec-{seed}.bin"
    path.write_bytes(b"".join(corpus_blocks(size, seed)))
    sid: str = client.create({"filename": path.name})["session_id"]
    client.upload(sid, path)
    status = client.wait(sid, timeout=120)
    assert status["anchor"]["status"] == "confirmed", status
    return sid


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def test_put_replaces_metadata_and_keeps_everything_else(client: Client) -> None:
    sid = client.create({"filename": "a.rec", "labels": {"team": "red"}})["session_id"]
    metadata = {"labels": {"team": "blue", "case": "42"}, "description": "demo", "owner": "ann"}
    updated = client.update(sid, {"metadata": metadata})
    assert updated["metadata"] == metadata
    status = client.status(sid)
    assert status["metadata"] == metadata and status["state"] == "CREATED"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"state": "STOPPED"}, ["state"]),
        ({"merkle_root": "00" * 32, "metadata": {}}, ["merkle_root"]),
        (
            {"key": {}, "chunk_size": 1, "bytes_received": 0},
            ["bytes_received", "chunk_size", "key"],
        ),
        ({"content": "x"}, ["content"]),
    ],
)
def test_put_refuses_fields_that_are_not_editable_naming_them(
    client: Client, body: dict[str, Any], named: list[str]
) -> None:
    sid = client.create({"filename": "b.rec"})["session_id"]
    error = _error(client.http.put(f"{SESSIONS}/{sid}", json=body), 400)
    assert f"fields {', '.join(named)} cannot be edited" in error["message"]
    assert client.status(sid)["metadata"] == {"filename": "b.rec"}  # nothing half-written


def test_put_with_bad_metadata_or_hold_is_400(client: Client) -> None:
    sid = client.create()["session_id"]
    assert (
        "metadata"
        in _error(client.http.put(f"{SESSIONS}/{sid}", json={"metadata": 3}), 400)["message"]
    )
    body = _error(client.http.put(f"{SESSIONS}/{sid}", json={"legal_hold": "yes"}), 400)
    assert "legal_hold" in body["message"]
    assert (
        "expected at least one"
        in _error(client.http.put(f"{SESSIONS}/{sid}", json={}), 400)["message"]
    )


def test_delete_shreds_the_session_leaving_a_tombstone_and_downloads_are_gone(
    client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    sid = sealed(client, tmp_path)
    before = client.status(sid)
    assert list(runtime.blobs.keys(f"sessions/{sid}/"))

    tomb = client.delete(sid)

    assert tomb["state"] == "DESTROYED"
    assert tomb["destroyed_by"] == "lucid-up:admin" and tomb["destroyed_at"]
    for field in ("session_id", "merkle_root", "tree_size", "anchor"):
        assert tomb[field] == before[field], field
    assert tomb["metadata"] == {}
    assert list(runtime.blobs.keys(f"sessions/{sid}/")) == []
    doc = runtime.meta.get_session(sid)
    assert "wrapped_private" not in (doc.get("key") or {})
    assert [h["to_state"] for h in doc["history"]][-2:] == ["CLEANUP", "DESTROYED"]
    for path in ("download", "chunks/0/download", "chunks/0/download?form=ciphertext"):
        body = _error(client.http.get(f"{SESSIONS}/{sid}/{path}"), 410)
        assert body["error"] == "gone" and sid in body["message"]
    ranged = client.http.get(f"{SESSIONS}/{sid}/download", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 410
    # The tombstone's chunk records still hold the leaves the anchored root commits to.
    assert client.chunk(sid, 0)["leaf_hash"]
    # Deleting again is harmless; editing a tombstone is Gone.
    assert client.delete(sid)["state"] == "DESTROYED"
    _error(client.http.put(f"{SESSIONS}/{sid}", json={"metadata": {"a": 1}}), 410)


def test_legal_hold_makes_delete_refuse_with_409_until_cleared(
    client: Client, tmp_path: Path
) -> None:
    sid = sealed(client, tmp_path, size=CHUNK + 5, seed=41)
    held = client.update(sid, {"legal_hold": True})
    assert held["legal_hold"] is True and held["legal_hold_by"] == "lucid-up:admin"

    body = _error(client.http.delete(f"{SESSIONS}/{sid}"), 409)
    assert "legal hold" in body["message"]
    assert client.status(sid)["state"] == "STOPPED"
    code, report = client.verify(sid)
    assert code == 200 and report["ok"]

    client.update(sid, {"legal_hold": False})
    assert client.delete(sid)["state"] == "DESTROYED"


def test_delete_of_an_unknown_session_is_404(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        client.delete("0" * 32)
    assert caught.value.status == 404
