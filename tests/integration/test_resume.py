"""Resumable, exactly-once uploads on the real stack: the offset protocol over HTTP, a
connection dropped midway, an API worker killed midway, and `lucid submit --resume`."""

from __future__ import annotations

import http.client
import json
import signal
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from bench.corpus import corpus_blocks
from cli.client import Client, UploadFailed
from cli.main import cli
from cli.servers import free_port
from cli.stack import Stack
from tests.integration.conftest import CHUNK, cli_env


def _recording(tmp_path: Path, size: int, seed: int, name: str = "rec.bin") -> tuple[Path, bytes]:
    data = b"".join(corpus_blocks(size, seed=seed))[:size]
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def _active(client: Client) -> str:
    sid: str = client.create()["session_id"]
    client.start(sid)
    return sid


def _restored(client: Client, sid: str, tmp_path: Path) -> bytes:
    final = client.wait(sid, timeout=120)
    assert final["state"] == "STOPPED", final
    out = tmp_path / f"{sid}.out"
    client.download(sid, out)
    code, report = client.verify(sid)
    assert code == 200, report
    return out.read_bytes()


def test_appends_state_their_offset_and_a_wrong_one_is_409_with_the_true_offset(
    client: Client, tmp_path: Path
) -> None:
    _, data = _recording(tmp_path, 2 * CHUNK + 300, seed=51)
    sid = _active(client)
    url = f"/api/v1/sessions/{sid}/data"
    head = client.http.head(f"/api/v1/sessions/{sid}")
    assert (head.status_code, head.headers["Upload-Offset"]) == (200, "0")

    missing = client.http.post(url, content=data[:10])
    assert missing.status_code == 400, missing.text
    assert "Upload-Offset" in missing.json()["message"]
    for bad in ("-1", "1.5", "²", "ten"):
        malformed = client.http.post(url, content=data[:10], params={"offset": bad})
        assert malformed.status_code == 400, malformed.text
        assert "non-negative integer" in malformed.json()["message"]

    first = client.http.post(url, content=data[:100], headers={"Upload-Offset": "0"})
    assert first.status_code == 202, first.text
    assert first.headers["Upload-Offset"] == "100"
    assert first.json()["offset"] == 100

    retried = client.http.post(url, content=data[:100], headers={"Upload-Offset": "0"})
    assert retried.status_code == 409, retried.text
    assert retried.headers["Upload-Offset"] == "100"
    body = retried.json()
    assert (body["error"], body["offset"]) == ("offset_mismatch", 100)
    assert body["message"] == "expected offset 100, got 0"
    assert client.offset(sid) == 100

    rest = client.http.post(f"{url}?offset=100", content=data[100:])
    assert rest.status_code == 202, rest.text
    assert client.status(sid)["offset"] == len(data)
    stopped = client.http.post(f"/api/v1/sessions/{sid}/stop")
    assert stopped.status_code == 202
    assert stopped.headers["Upload-Offset"] == str(len(data))
    assert _restored(client, sid, tmp_path) == data


def test_a_retried_put_appends_nothing_and_answers_the_offset(
    client: Client, tmp_path: Path
) -> None:
    _, data = _recording(tmp_path, CHUNK + 7, seed=52)
    sid = client.create()["session_id"]
    url = f"/api/v1/sessions/{sid}/recording"
    assert client.http.put(url, content=data).status_code == 202
    again = client.http.put(url, content=data)
    assert again.status_code == 409, again.text
    assert (again.json()["offset"], again.headers["Upload-Offset"]) == (len(data), str(len(data)))
    assert _restored(client, sid, tmp_path) == data


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_multipart_form_upload_is_415_and_stores_nothing(client: Client, method: str) -> None:
    sid = client.create()["session_id"]
    if method == "POST":
        client.start(sid)
        url = f"/api/v1/sessions/{sid}/data"
    else:
        url = f"/api/v1/sessions/{sid}/recording"
    response = client.http.request(
        method, url, files={"file": ("rec", b"frames " * 100)}, headers={"Upload-Offset": "0"}
    )
    assert response.status_code == 415, response.text
    assert "application/octet-stream" in response.json()["message"]
    assert client.offset(sid) == 0
    assert client.status(sid)["state"] == ("ACTIVE" if method == "POST" else "CREATED")


def test_a_connection_dropped_midway_resumes_from_the_offset_head_reports(
    client: Client, tmp_path: Path
) -> None:
    path, data = _recording(tmp_path, 5 * CHUNK + 123, seed=53)
    sid = _active(client)
    sent = 3 * CHUNK + 500
    url = client.http.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=30)
    conn.putrequest("POST", f"/api/v1/sessions/{sid}/data")
    conn.putheader("Authorization", client.http.headers["Authorization"])
    conn.putheader("Content-Length", str(len(data)))
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Upload-Offset", "0")
    conn.endheaders(data[:sent])
    conn.close()  # the client goes away with the body half sent

    deadline, last, stable_since = time.monotonic() + 30, -1, time.monotonic()
    while time.monotonic() < deadline:
        offset = client.offset(sid)
        if offset != last:
            last, stable_since = offset, time.monotonic()
        elif offset >= 3 * CHUNK and time.monotonic() - stable_since > 1.0:
            break
        time.sleep(0.1)
    assert 3 * CHUNK <= last <= sent  # the full chunks, and what arrived of the fourth

    status = client.upload(sid, path)  # HEAD, then POST from there, then stop
    assert status["offset"] == len(data)
    assert status["chunk_count"] == 6
    assert _restored(client, sid, tmp_path) == data


def _api_workers(stack: Stack) -> list[psutil.Process]:
    master = next(p for p in stack.procs if p.name == "api")
    return psutil.Process(master.popen.pid).children()


def test_the_api_killed_midway_the_client_resumes_by_itself_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    # Issue 8 item 2: the API process died mid-upload and the client resumed from the
    # reported offset; the chunk it had published must be neither lost nor doubled.
    path, data = _recording(tmp_path, 4 * 1024 * 1024 + 77, seed=54)
    client = Client(stack.api_url, timeout=60, backoff=0.3, token=stack.admin_token)
    sid = client.create()["session_id"]
    killed: list[int] = []
    sent = 0

    def progress(n: int) -> None:
        nonlocal sent
        sent += n
        if not killed and sent >= 2 * 1024 * 1024:
            time.sleep(0.5)  # let the server commit some of what it has read
            for worker in _api_workers(stack):
                killed.append(worker.pid)
                worker.send_signal(signal.SIGKILL)

    status = client.upload(sid, path, progress)
    assert killed, "no API worker was killed"
    assert sent >= len(data)  # some bytes were sent twice, none was stored twice
    assert status["offset"] == len(data)
    assert status["chunk_count"] == len(data) // CHUNK + 1
    assert _restored(client, sid, tmp_path) == data


def test_submit_resume_continues_an_upload_an_earlier_process_began(
    client: Client, tmp_path: Path
) -> None:
    path, data = _recording(tmp_path, 4 * CHUNK + 77, seed=55)
    half = tmp_path / "half.bin"
    half.write_bytes(data[: 2 * CHUNK + 10])
    sid = _active(client)
    assert client.append(sid, half, 0) == 2 * CHUNK + 10  # ... and that process went away

    result = CliRunner(env=cli_env(client)).invoke(
        cli,
        ["submit", str(path), "--resume", sid, "--wait", "--json",
         "--api", str(client.http.base_url)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["session_id"], out["state"], out["chunks"], out["bytes"]) == (
        sid,
        "STOPPED",
        5,
        len(data),
    )
    assert _restored(client, sid, tmp_path) == data


def test_an_upload_that_keeps_failing_gives_up_after_its_budget_naming_the_resume(
    tmp_path: Path,
) -> None:
    path, _ = _recording(tmp_path, 1000, seed=56)
    client = Client(f"http://127.0.0.1:{free_port()}", timeout=2, attempts=3, backoff=0.05)
    sid = "ab" * 16
    started = time.monotonic()
    with pytest.raises(UploadFailed) as caught:
        client.upload(sid, path)
    assert time.monotonic() - started < 5  # 3 attempts, 0.05 s + 0.1 s of backoff
    assert (caught.value.session_id, caught.value.offset) == (sid, 0)
    assert f"--resume {sid}" in str(caught.value)
    assert "ConnectError" in str(caught.value)
