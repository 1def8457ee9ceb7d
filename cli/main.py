"""`lucid`: run the embedded stack, submit recordings, fetch, verify and benchmark them."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from cli.client import ApiError, Client, default_api_url
from lucid.errors import LedgerError, LucidError
from lucid.settings import STAGES

API_OPTION = click.option(
    "--api", "api_url", default=default_api_url, show_default="$LUCID_API_URL or http://127.0.0.1:8087",
    help="Base URL of the session API.",
)  # fmt: skip


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lucid-sessions")
def cli() -> None:
    """Lucid: tamper-evident, encrypted storage for recorded remote-desktop sessions.

    Start the embedded stack with `lucid up`, then `lucid submit FILE --wait`.
    """


@cli.command()
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path("lucid-data"), show_default=True
)
@click.option("--port", default=8087, show_default=True, help="API port.")
@click.option("--flower-port", default=5555, show_default=True, help="Flower port (0: no Flower).")
def up(data_dir: Path, port: int, flower_port: int) -> None:
    """Start the whole embedded stack in the foreground; Ctrl-C stops everything.

    Starts redis-server and SecantusDB (unless REDIS_URL / MONGODB_URL are set), one
    Celery worker group per stage queue, Flower, and the API under gunicorn.
    """
    from cli.stack import Stack, StackConfig

    stack = Stack(StackConfig(data_dir=data_dir, api_port=port, flower_port=flower_port or None))
    stopping = False

    def _stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"starting the Lucid stack in {data_dir.resolve()} ...", err=True)
    try:
        stack.start()
    except (RuntimeError, LucidError) as exc:
        _fail(str(exc))
    for name, url in stack.urls.items():
        click.echo(f"  {name:8s} {url}")
    click.echo(f"  logs     {data_dir.resolve() / 'logs'}")
    click.echo("ready — Ctrl-C to stop", err=True)
    try:
        while not stopping:
            dead = [p for p in stack.procs if not p.alive()]
            if dead:
                click.echo(f"{dead[0].name} exited:\n{dead[0].tail()}", err=True)
                break
            time.sleep(0.5)
    finally:
        click.echo("stopping ...", err=True)
        stack.stop()
    sys.exit(0 if stopping else 1)


@cli.command()
@click.option(
    "--stage",
    "stages",
    multiple=True,
    type=click.Choice(STAGES),
    help="Only these stages (repeatable).",
)
def workers(stages: tuple[str, ...]) -> None:
    """Run one worker group per stage queue in the foreground (uses REDIS_URL, MONGODB_URL)."""
    from cli.servers import spawn
    from lucid.settings import load_settings
    from workers.profiles import worker_argv, worker_groups

    settings = load_settings()
    procs = []
    for group in worker_groups(settings, stages or None):
        click.echo(f"{group.stage}: {group.concurrency} processes", err=True)
        procs.append(spawn(f"worker-{group.stage}", worker_argv(group), settings.data_dir / "logs"))
    try:
        while all(p.alive() for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.stop()


@cli.group()
def keys() -> None:
    """Manage key material."""


@keys.command("init")
@click.option(
    "--key-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Default: $LUCID_KEY_DIR or DATA_DIR/keys.",
)
@click.option(
    "--force", is_flag=True, help="Replace existing keys (old sessions become unreadable)."
)
def keys_init(key_dir: Path | None, force: bool) -> None:
    """Create the recipient (X25519) and ledger (Ed25519) key pairs, mode 0600."""
    from lucid.keys import init_keys
    from lucid.settings import load_settings

    target = key_dir or load_settings().keys_path
    try:
        for path in init_keys(target, overwrite=force):
            click.echo(str(path))
    except LucidError as exc:
        _fail(str(exc))


def _print(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, sort_keys=False))
        return
    for key, value in obj.items():
        if isinstance(value, dict | list):
            value = json.dumps(value)
        click.echo(f"{key:14s} {value}")


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": status["session_id"],
        "state": status["state"],
        "chunks": status.get("chunk_count"),
        "bytes": status.get("bytes_received"),
        "merkle_root": status.get("merkle_root"),
        "anchor": status.get("anchor"),
        "error": status.get("error"),
    }


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Wait until the root is anchored.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@API_OPTION
def submit(file: Path, wait: bool, as_json: bool, api_url: str) -> None:
    """Upload a recording; with --wait, follow it until its root is anchored."""
    client = Client(api_url)
    try:
        session = client.create({"filename": file.name})
        sid = session["session_id"]
        with tqdm(
            total=file.stat().st_size, unit="B", unit_scale=True, desc="upload", file=sys.stderr
        ) as bar:
            status = client.upload(sid, file, bar.update)
        if wait:
            total = status.get("chunk_count") or 0
            with tqdm(total=total, unit="chunk", desc="pipeline", file=sys.stderr) as bar:

                def _progress(s: dict[str, Any]) -> None:
                    bar.update(s["chunks"]["hashed"] - bar.n)

                status = client.wait(sid, on_status=_progress)
    except (ApiError, OSError, TimeoutError) as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f"{exc} (is the stack running? try `lucid up`)")
    _print(_summary(status), as_json)
    if status["state"] == "ERROR":
        sys.exit(1)


@cli.command()
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True)
@API_OPTION
def status(session_id: str, as_json: bool, api_url: str) -> None:
    """Show a session's state, chunk counts per stage, Merkle root and anchor."""
    try:
        _print(Client(api_url).status(session_id), as_json)
    except ApiError as exc:
        _fail(str(exc))


@cli.command()
@click.argument("session_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@API_OPTION
def get(session_id: str, output: Path, api_url: str) -> None:
    """Download a recording; exits 0 only when every chunk verified against the root."""
    client = Client(api_url)
    try:
        size = client.status(session_id).get("bytes_received") or 0
        with tqdm(total=size, unit="B", unit_scale=True, desc="download", file=sys.stderr) as bar:
            written = client.download(session_id, output, bar.update)
    except ApiError as exc:
        chunk = exc.body.get("chunk_index")
        _fail(f"{exc}" + (f" (chunk {chunk})" if chunk is not None else ""))
    click.echo(f"{output}: {written} bytes, every chunk verified", err=True)


@cli.command()
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A ledger checkpoint kept earlier (`lucid checkpoint`): also prove that the "
    "ledger extends it, so a rewritten history is caught.",
)
@API_OPTION
def verify(session_id: str, as_json: bool, checkpoint_file: Path | None, api_url: str) -> None:
    """Check every stored chunk against the root, the proofs and the anchor entry."""
    client = Client(api_url)
    try:
        code, report = client.verify(session_id)
    except ApiError as exc:
        _fail(str(exc))
    if checkpoint_file is not None:
        try:
            report["ledger"] = _check_extends(client, checkpoint_file, report)
        except (ApiError, LucidError, OSError, ValueError) as exc:
            report["ok"] = False
            report.setdefault("failures", []).append(f"ledger: {exc}")
    _print(report, as_json)
    if code != 200 or not report.get("ok"):
        for failure in report.get("failures", []):
            click.echo(f"FAILED: {failure}", err=True)
        sys.exit(1)


def _check_extends(client: Client, checkpoint_file: Path, report: dict[str, Any]) -> str:
    """Prove locally, with the kept checkpoint's key, that the ledger extends it and, when
    the session was anchored before it, that the session's entry is still the one the
    kept head commits to."""
    from lucid.checkpoint import Checkpoint
    from lucid.ledger import LedgerEntry, verify_consistency

    kept = Checkpoint.from_dict(json.loads(checkpoint_file.read_text()))
    details = (report.get("anchor") or {}).get("details") or {}
    seq = details.get("seq")
    start = seq if isinstance(seq, int) and 0 <= seq < kept.size else None
    answer = client.consistency(kept.size, start)
    head = Checkpoint.from_dict(answer["checkpoint"])
    entries = [LedgerEntry.from_dict(entry) for entry in answer["entries"]]
    verify_consistency(kept, head, entries)
    if start is None:
        return f"extends the kept checkpoint of size {kept.size} (now {head.size})"
    entry = entries[0]
    for name, expected, got in (
        ("entry_hash", details.get("entry_hash"), entry.entry_hash),
        ("root", report.get("merkle_root"), entry.root),
    ):
        if expected != got:
            raise LedgerError(f"ledger entry seq {seq}: expected {name} {expected}, got {got}")
    return (
        f"extends the kept checkpoint of size {kept.size} (now {head.size}), "
        f"which holds this session's entry seq {seq}"
    )


@cli.command()
@API_OPTION
def checkpoint(api_url: str) -> None:
    """Print the ledger's signed head as JSON; keep it (`lucid checkpoint > head.json`) to
    prove later with `lucid verify ID --checkpoint head.json` that history was not rewritten."""
    from lucid.checkpoint import Checkpoint

    try:
        head = Checkpoint.from_dict(Client(api_url).checkpoint())
        head.verify()
    except (ApiError, LucidError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(head.to_dict(), indent=2))


@cli.command()
@click.option(
    "--size-mb", default=64, show_default=True, help="Size of the generated sample recording."
)
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path("lucid-data"), show_default=True
)
@click.option("--port", default=8087, show_default=True)
def demo(size_mb: int, data_dir: Path, port: int) -> None:
    """The main job end to end: start the stack, push a sample session through, show it
    anchored, restore it byte for byte and verify it; then stop the stack."""
    from cli.demo import run_demo

    sys.exit(run_demo(size_mb, data_dir, port))


def _add_bench() -> None:
    from bench.run import bench
    from bench.scaling import scaling

    cli.add_command(bench, "bench")
    cli.add_command(scaling, "bench-scaling")


_add_bench()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
