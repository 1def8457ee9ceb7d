"""`lucid demo`: the whole main job on the embedded default, narrated."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import click

from bench.corpus import write_corpus
from cli.client import Client
from cli.servers import free_port, port_is_open
from cli.stack import Stack, StackConfig
from cli.supervisor import StopRequested, stop_on_signals
from lucid.settings import load_settings


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def run_demo(size_mb: int, data_dir: Path | None, port: int | None, *, keep: bool = False) -> int:
    """Start the stack, submit, wait for the anchor, restore, verify; 0 when all held.

    Settings and the port are checked before anything is generated or started. The data
    directory goes afterwards unless `keep` (a directory that existed before keeps
    everything but the sample)."""
    if port is None:
        port = free_port()
    elif port_is_open(port):
        raise RuntimeError(
            f"expected a free port for the demo's API, got {port} taken; "
            "pass another --port or leave it out to pick a free one"
        )
    where = data_dir or Path(tempfile.gettempdir()) / "lucid-demo"
    load_settings({**os.environ, "LUCID_DATA_DIR": str(where.resolve())})
    created = data_dir is None or not data_dir.exists()
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="lucid-demo-"))
    try:
        with stop_on_signals():
            return _narrate(size_mb, data_dir, port)
    except StopRequested as stop:
        click.echo(f"{stop} received; demo stopped", err=True)
        return 1
    finally:
        if keep:
            click.echo(f"   kept {data_dir.resolve()}")
        elif created:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            (data_dir / "sample-recording.bin").unlink(missing_ok=True)


def _narrate(size_mb: int, data_dir: Path, port: int) -> int:
    say = click.echo
    data_dir.mkdir(parents=True, exist_ok=True)
    sample = data_dir / "sample-recording.bin"
    say(f"1. generating a {size_mb} MiB sample recording (video, screen frames, events)")
    write_corpus(sample, size_mb * 1024 * 1024)
    say("2. starting the embedded stack: redis-server, SecantusDB, 5 worker groups, API")
    started = time.monotonic()
    with Stack(StackConfig(data_dir=data_dir, api_port=port, flower_port=None)) as stack:
        say(f"   ready in {time.monotonic() - started:.1f}s — API {stack.api_url}")
        client = Client(stack.api_url, token=stack.admin_token)
        session_id = client.create({"filename": sample.name})["session_id"]
        say(f"3. submitting session {session_id}")
        t0 = time.monotonic()
        client.upload(session_id, sample)
        uploaded = time.monotonic() - t0
        status = client.wait(session_id, timeout=1800)
        total = time.monotonic() - t0
        if status["state"] == "ERROR":
            say(f"   FAILED: {status['error']}")
            return 1
        anchor = status["anchor"]
        say(
            f"   {status['chunk_count']} chunks, uploaded in {uploaded:.2f}s, "
            f"anchored {total:.2f}s after the first byte ({size_mb / total:.1f} MiB/s)"
        )
        say(f"   merkle root {status['merkle_root']}")
        say(f"   anchor      {anchor['backend']} {anchor['reference']} ({anchor['status']})")
        restored = data_dir / f"{session_id}.restored"
        say("4. restoring (every chunk checked against the root, decrypted, decompressed)")
        client.download(session_id, restored)
        same = _sha256(restored) == _sha256(sample)
        say(f"   byte-identical to the input: {'yes' if same else 'NO'}")
        say("5. verifying stored chunks, inclusion proofs and the ledger entry")
        code, report = client.verify(session_id)
        say(f"   {report['chunks_verified']}/{report['chunks']} chunks verified, ok={report['ok']}")
        proof = client.proof(session_id, 0)
        say(f"   proof for chunk 0: {len(proof['proof'])} hashes up to the root")
        restored.unlink(missing_ok=True)
        ok = same and code == 200 and report["ok"]
    say("6. stack stopped. " + ("All checks passed." if ok else "SOME CHECKS FAILED."))
    return 0 if ok else 1
