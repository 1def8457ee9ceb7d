"""End of life on the real stack: the retention sweep (the beat task's function, driven
with a `now` in the future) shreds an expired session and skips one on legal hold; an
abandoned recording is stopped and sealed; MAX_CONCURRENT_SESSIONS answers 429."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

import celeryconfig
from bench.corpus import corpus_blocks
from cli.client import Client
from cli.stack import Stack
from lucid.crypto.keys import load_token_signing_key
from lucid.crypto.tokens import SCOPES, issue_token
from lucid.runtime import Runtime
from lucid.settings import load_settings
from tasks.lifecycle import run_retention
from tests.integration.apiserver import admin_headers, running_api
from tests.integration.conftest import CHUNK


def _broker_down(*_: object) -> None:
    """Nothing is enqueued: the stack's reconciler must find the committed work itself."""


def _sealed(client: Client, tmp_path: Path, seed: int) -> str:
    path = tmp_path / f"{seed}.bin"
    path.write_bytes(b"".join(corpus_blocks(CHUNK + 100, seed)))
    sid: str = client.create()["session_id"]
    client.upload(sid, path)
    assert client.wait(sid, timeout=120)["anchor"]["status"] == "confirmed"
    return sid


def test_retention_sweep_shreds_an_expired_session_and_skips_a_held_one(
    stack: Stack, client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    tenant = f"ret-{uuid.uuid4().hex[:8]}"
    expired, held = _sealed(client, tmp_path, 80), _sealed(client, tmp_path, 81)
    for sid in (expired, held):
        runtime.meta.update_session(sid, {"tenant": tenant})
    runtime.meta.set_legal_hold(held, True, by="counsel")
    # This tenant keeps sessions 1 day; everyone else the default 30. Nothing is abandoned.
    rt = Runtime(
        load_settings(
            {**stack.env, "RETENTION_DAYS_BY_TENANT": f"{tenant}=1", "ABANDONED_AFTER_H": "8760"}
        )
    )

    report = run_retention(rt, datetime.now(UTC) + timedelta(days=2), on_chunk=_broker_down)

    assert report["shredded"] == [expired] and report["failed"] == {}, report
    tomb = runtime.meta.get_session(expired)
    assert tomb["state"] == "DESTROYED" and tomb["destroyed_by"] == "system:retention"
    assert list(runtime.blobs.keys(f"sessions/{expired}/")) == []
    owner = issue_token(
        load_token_signing_key(runtime.settings.keys_path),
        subject="test:owner",
        tenant=tenant,
        scopes=SCOPES,
        ttl=timedelta(hours=1),
    )
    gone = client.http.get(
        f"/api/v1/sessions/{expired}/download", headers={"Authorization": f"Bearer {owner}"}
    )
    assert gone.status_code == 410, gone.text
    assert runtime.meta.get_session(held)["state"] == "STOPPED"
    runtime.meta.update_session(held, {"tenant": None})  # back to the API's tenant
    code, verified = client.verify(held)
    assert code == 200 and verified["ok"]


def test_retention_sweep_stops_and_seals_an_abandoned_recording(
    stack: Stack, client: Client, runtime: Runtime, tmp_path: Path
) -> None:
    data = b"".join(corpus_blocks(2 * CHUNK + 50, 82))
    path = tmp_path / "live.bin"
    path.write_bytes(data)
    sid = client.create()["session_id"]
    client.start(sid)
    client.append(sid, path, 0)
    assert client.status(sid)["state"] == "ACTIVE"
    # Left alone for two years: the only session of the shared store idle that long.
    long_ago = (datetime.now(UTC) - timedelta(days=730)).isoformat(timespec="microseconds")
    runtime.meta.sessions.update_one({"session_id": sid}, {"$set": {"updated_at": long_ago}})
    rt = Runtime(load_settings({**stack.env, "ABANDONED_AFTER_H": "8760"}))
    report = run_retention(rt, on_chunk=_broker_down, on_seal=_broker_down)
    assert sid in report["stopped"], report
    # The final chunk and the seal were committed; the stack's reconciler finishes them.
    deadline = time.monotonic() + 90
    while (client.status(sid).get("anchor") or {}).get("status") != "confirmed":
        assert time.monotonic() < deadline, client.status(sid)
        time.sleep(0.3)
    out = tmp_path / "out.bin"
    assert client.download(sid, out) == len(data) and out.read_bytes() == data


def test_retention_sweep_is_on_the_beat_schedule() -> None:
    entry = celeryconfig.beat_schedule["retention"]
    assert entry["task"] == "lucid.lifecycle.retention"
    assert celeryconfig.task_routes["lucid.lifecycle.retention"] == {"queue": "merkle"}


def test_max_concurrent_sessions_answers_429_with_retry_after(
    stack: Stack, runtime: Runtime, tmp_path: Path
) -> None:
    live = sum(runtime.meta.sessions_by_state()[s] for s in ("CREATED", "ACTIVE", "PAUSED",
               "STARTING", "PAUSING", "STOPPING"))  # fmt: skip
    env = {**stack.env, "MAX_CONCURRENT_SESSIONS": str(live + 2)}
    with running_api(tmp_path / "api", env) as url:
        http = httpx.Client(base_url=url, timeout=30, headers=admin_headers(tmp_path / "api", env))
        created = [http.post("/api/v1/sessions", json={}) for _ in range(2)]
        assert [r.status_code for r in created] == [201, 201]
        refused = http.post("/api/v1/sessions", json={})
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "30"
        assert "MAX_CONCURRENT_SESSIONS" in refused.json()["message"]
        http.delete(f"/api/v1/sessions/{created[0].json()['session_id']}")
        assert http.post("/api/v1/sessions", json={}).status_code == 201
