"""`lucid`: run the embedded stack, submit recordings, fetch, verify and benchmark them."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
from tqdm import tqdm

from cli import lifecycle_cmds
from cli.client import ApiError, Client
from cli.common import (
    EXISTING_FILE,
    api_client,
    api_options,
    checkpoint_option,
    fail,
    say,
    show,
)
from cli.token_cmds import token
from lucid.errors import LedgerError, LucidError
from lucid.settings import STAGES

# What an operator can cause or meet: the stack down, a bad id, a bad setting, a taken
# port, an unwritable path. Anything else is a bug and keeps its traceback.
EXPECTED = (ApiError, LucidError, httpx.HTTPError, OSError, RuntimeError)


def describe(exc: BaseException) -> str:
    """One line for an expected failure, saying what to do where there is something."""
    if isinstance(exc, httpx.TransportError):
        try:
            where = f" at {exc.request.url.scheme}://{exc.request.url.netloc.decode()}"
        except RuntimeError:  # no request attached
            where = ""
        reason = str(exc) or type(exc).__name__
        return f"cannot reach the Lucid API{where} ({reason}); is the stack running? try `lucid up`"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class LucidGroup(click.Group):
    """Every command's expected failures end as one `error:` line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise  # --help, --version and Ctrl-C at a prompt: click's own ends (RuntimeErrors)
        except EXPECTED as exc:
            fail(describe(exc))


@click.group(cls=LucidGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option(
    "--blobs",
    type=click.Choice(["fs", "s3"]),
    default=None,
    help="Blob backend (default: BLOB_BACKEND, else fs). s3 without S3_ENDPOINT_URL starts "
    "SeaweedFS in DATA_DIR/seaweedfs.",
)
def up(data_dir: Path, port: int, flower_port: int, blobs: str | None) -> None:
    """Start the whole embedded stack in the foreground; Ctrl-C stops everything.

    Starts redis-server and SecantusDB (unless REDIS_URL / MONGODB_URL are set), SeaweedFS
    for `--blobs s3` (unless S3_ENDPOINT_URL is set), one
    Celery worker group per stage queue, Flower, and the API under gunicorn. A process
    that exits is restarted with backoff; SIGHUP, SIGINT and SIGTERM stop them all.
    Flower's dashboard and API need the user:password in DATA_DIR/flower-credentials
    (or FLOWER_BASIC_AUTH); its /metrics and /healthcheck stay open on loopback.
    """
    from cli.stack import ESSENTIAL, Stack, StackConfig
    from cli.supervisor import StopRequested, Supervisor, stop_on_signals

    extra_env = {"BLOB_BACKEND": blobs} if blobs else {}
    stack = Stack(
        StackConfig(
            data_dir=data_dir,
            api_port=port,
            flower_port=flower_port or None,
            extra_env=extra_env,
        )
    )
    code = 1
    stack.check()
    with stop_on_signals() as disarm:
        try:
            say(f"starting the Lucid stack in {data_dir.resolve()} ...")
            stack.start()
            for name, url in stack.urls.items():
                click.echo(f"  {name:8s} {url}")
            if stack.flower_credentials:
                click.echo(f"  flower   user:password in {stack.flower_credentials}")
            if stack.admin_token_path:
                click.echo(f"  token    admin bearer token in {stack.admin_token_path}")
            click.echo(f"  logs     {data_dir.resolve() / 'logs'}")
            say("ready — Ctrl-C to stop")
            supervisor = Supervisor(stack.procs, say, essential=ESSENTIAL)
            while supervisor.poll() is None:
                time.sleep(0.5)
        except StopRequested as stop:
            say(f"{stop} received")
            code = 0
        finally:
            disarm()
            if stack.procs:
                say("stopping ...")
            stack.stop()
    sys.exit(code)


@cli.command()
@click.option(
    "--stage",
    "stages",
    multiple=True,
    type=click.Choice(STAGES),
    help="Only these stages (repeatable).",
)
@click.option(
    "--stages",
    "stage_list",
    default="",
    metavar="LIST",
    help=f"Only these stages, comma-separated (e.g. compress,encrypt); of {', '.join(STAGES)}.",
)
def workers(stages: tuple[str, ...], stage_list: str) -> None:
    """Run one worker group per stage queue in the foreground, joining a running stack.

    The stack is named by the environment: REDIS_URL (results, and the broker unless
    BROKER_URL is set), MONGODB_URL, the blob store's settings, and QUEUE_PREFIX when the
    deployment has one. A group that exits is restarted with backoff."""
    from cli.servers import ManagedProcess, spawn
    from cli.supervisor import StopRequested, Supervisor, stop_on_signals
    from lucid.crypto.roles import make_role_key_dir
    from lucid.settings import load_settings
    from workers.profiles import worker_argv, worker_groups

    listed = [part.strip() for part in stage_list.split(",") if part.strip()]
    unknown = [name for name in listed if name not in STAGES]
    if unknown:
        fail(f"--stages: expected stages of {', '.join(STAGES)}, got {', '.join(unknown)}", 2)
    chosen = tuple(stage for stage in STAGES if stage in {*stages, *listed})
    settings = load_settings()
    missing = [
        name
        for name, value in (
            ("REDIS_URL or BROKER_URL", settings.redis_url or settings.broker_url),
            ("MONGODB_URL", settings.mongodb_url),
        )
        if not value
    ]
    if missing:
        fail(
            f"expected {' and '.join(missing)} in the environment, got none; "
            "`lucid workers` joins an existing stack (`lucid up` runs a whole one)"
        )
    logs = settings.data_dir / "logs"
    procs: list[ManagedProcess] = []
    code = 1
    with stop_on_signals() as disarm:
        try:
            for group in worker_groups(settings, chosen or None):
                name = f"worker-{group.stage}"
                say(
                    f"{group.stage}: {group.concurrency} processes on queue {group.queue_name}, "
                    f"log {logs / name}.log"
                )
                # Each group holds only its role's keys (lucid.crypto.roles), as under `lucid up`.
                key_dir = make_role_key_dir(
                    settings.keys_path, settings.data_dir / "role-keys", (group.role,)
                )
                env = {
                    **os.environ,
                    "LUCID_ROLE": group.role,
                    "LUCID_KEY_DIR": str(key_dir),
                }
                procs.append(spawn(name, worker_argv(group), logs, env))
            supervisor = Supervisor(procs, say)
            while supervisor.poll() is None and not supervisor.all_given_up():
                time.sleep(0.5)
        except StopRequested as stop:
            say(f"{stop} received")
            code = 0
        finally:
            disarm()
            for p in procs:
                p.stop()
    sys.exit(code)


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
    from lucid.crypto.keys import init_keys
    from lucid.settings import load_settings

    target = key_dir or load_settings().keys_path
    try:
        for path in init_keys(target, overwrite=force):
            click.echo(str(path))
    except LucidError as exc:
        fail(str(exc))


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
@click.argument("file", type=EXISTING_FILE)
@click.option("--wait", is_flag=True, help="Wait until the root is anchored.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option(
    "--resume", "resume_id", metavar="SESSION_ID",
    help="Continue an upload an earlier run began, from the offset the server committed.",
)  # fmt: skip
@api_options
def submit(
    file: Path, wait: bool, as_json: bool, resume_id: str | None, api_url: str, token: str | None
) -> None:
    """Upload a recording; with --wait, follow it until its root is anchored.

    The upload resumes by itself after a dropped connection or a 5xx (a bounded number of
    times); if it still fails, the message names the session to pass to --resume.
    """
    client = api_client(api_url, token)
    try:
        if resume_id is None:
            sid = client.create({"filename": file.name})["session_id"]
            click.echo(f"session {sid}", err=True)
        else:
            sid = resume_id
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
        fail(str(exc))
    except Exception as exc:
        fail(f"{exc} (is the stack running? try `lucid up`)")
    show(_summary(status), as_json)
    if status["state"] == "ERROR":
        sys.exit(1)


@cli.command()
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True)
@api_options
def status(session_id: str, as_json: bool, api_url: str, token: str | None) -> None:
    """Show a session's state, chunk counts per stage, Merkle root and anchor."""
    try:
        show(api_client(api_url, token).status(session_id), as_json)
    except ApiError as exc:
        fail(str(exc))


@cli.command()
@click.argument("session_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--key",
    "key_file",
    type=EXISTING_FILE,
    default=None,
    help="recipient.key: verify and decrypt here, on this machine (the server only hands "
    "over ciphertext, the wrapped key and the signed ledger entry).",
)
@click.option(
    "--ledger-pub",
    type=EXISTING_FILE,
    default=None,
    help="With --key: the ledger public key (PEM) to trust. Default: the key of "
    "--checkpoint, else ledger.pub in $LUCID_KEY_DIR or DATA_DIR/keys.",
)
@checkpoint_option(
    "With --key: a checkpoint kept earlier (`lucid checkpoint`); its key is trusted."
)
@api_options
def get(
    session_id: str,
    output: Path,
    key_file: Path | None,
    ledger_pub: Path | None,
    checkpoint_file: Path | None,
    api_url: str,
    token: str | None,
) -> None:
    """Download a recording; exits 0 only when every chunk verified against the root."""
    folder = output.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        state = "not writable" if folder.is_dir() else "no such directory"
        fail(f"expected a writable directory for {output}, got {folder}: {state}")
    client = api_client(api_url, token)
    if key_file is not None:
        _get_offline(client, session_id, output, key_file, ledger_pub, checkpoint_file)
        return
    try:
        size = client.status(session_id).get("bytes_received") or 0
        with tqdm(total=size, unit="B", unit_scale=True, desc="download", file=sys.stderr) as bar:
            written = client.download(session_id, output, bar.update)
    except ApiError as exc:
        chunk = exc.body.get("chunk_index")
        fail(f"{exc}" + (f" (chunk {chunk})" if chunk is not None else ""))
    click.echo(f"{output}: {written} bytes, every chunk verified", err=True)


def _trusted_ledger_key(ledger_pub: Path | None, checkpoint_file: Path | None) -> Any:
    """The ledger public key the user trusts: a PEM file, a kept checkpoint's, or local."""
    from cryptography.hazmat.primitives import serialization

    from lucid.crypto.keys import load_ledger_verify_key
    from lucid.integrity.checkpoint import Checkpoint
    from lucid.settings import load_settings

    if ledger_pub is not None:
        return serialization.load_pem_public_key(ledger_pub.read_bytes())
    if checkpoint_file is not None:
        kept = Checkpoint.from_dict(json.loads(checkpoint_file.read_text()))
        kept.verify()
        return kept.public_key()
    return load_ledger_verify_key(load_settings().keys_path)


def _get_offline(
    client: Client,
    session_id: str,
    output: Path,
    key_file: Path,
    ledger_pub: Path | None,
    checkpoint_file: Path | None,
) -> None:
    """`get --key`: verify every chunk against the anchored root and decrypt here."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from lucid.integrity.offline import Bundle, decrypt_chunks

    try:
        ledger_key = _trusted_ledger_key(ledger_pub, checkpoint_file)
        recipient = serialization.load_pem_private_key(key_file.read_bytes(), None)
    except (LucidError, OSError, ValueError, TypeError) as exc:
        fail(f"cannot load the keys: {exc}")
    if not isinstance(recipient, X25519PrivateKey):
        fail(f"{key_file}: expected an X25519 private key, got {type(recipient).__name__}")
        return
    if not isinstance(ledger_key, Ed25519PublicKey):
        fail(f"ledger key: expected an Ed25519 public key, got {type(ledger_key).__name__}")
        return
    tmp = output.with_name(output.name + ".part")
    try:
        bundle = Bundle.from_dict(client.bundle(session_id))
        size = sum(leaf.plaintext_len for leaf in bundle.leaves)

        def fetch(index: int) -> bytes:
            return client.chunk_ciphertext(session_id, index)

        written = 0
        with (
            open(tmp, "wb") as f,
            tqdm(total=size, unit="B", unit_scale=True, desc="get", file=sys.stderr) as bar,
        ):
            for data in decrypt_chunks(bundle, ledger_key, recipient, fetch):
                f.write(data)
                written += len(data)
                bar.update(len(data))
            f.flush()
            os.fsync(f.fileno())
    except ApiError as exc:
        tmp.unlink(missing_ok=True)
        fail(str(exc))
    except LucidError as exc:  # names the chunk and the field that failed
        tmp.unlink(missing_ok=True)
        fail(str(exc))
    tmp.replace(output)
    click.echo(
        f"{output}: {written} bytes, every chunk verified against the anchored root and "
        "decrypted here",
        err=True,
    )


@cli.command()
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True)
@checkpoint_option(
    "A ledger checkpoint kept earlier (`lucid checkpoint`): also prove that the "
    "ledger extends it, so a rewritten history is caught."
)
@api_options
def verify(
    session_id: str, as_json: bool, checkpoint_file: Path | None, api_url: str, token: str | None
) -> None:
    """Check every stored chunk against the root, the proofs and the anchor entry."""
    client = api_client(api_url, token)
    try:
        code, report = client.verify(session_id)
    except ApiError as exc:
        fail(str(exc))
    if checkpoint_file is not None:
        try:
            report["ledger"] = _check_extends(client, checkpoint_file, report)
        except (ApiError, LucidError, OSError, ValueError) as exc:
            report["ok"] = False
            report.setdefault("failures", []).append(f"ledger: {exc}")
    show(report, as_json)
    if code != 200 or not report.get("ok"):
        for failure in report.get("failures", []):
            click.echo(f"FAILED: {failure}", err=True)
        sys.exit(1)


def _check_extends(client: Client, checkpoint_file: Path, report: dict[str, Any]) -> str:
    """Prove locally, with the kept checkpoint's key, that the ledger extends it and, when
    the session was anchored before it, that the session's entry is still the one the
    kept head commits to."""
    from lucid.integrity.checkpoint import Checkpoint
    from lucid.integrity.ledger import LedgerEntry, verify_consistency

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
@api_options
def checkpoint(api_url: str, token: str | None) -> None:
    """Print the ledger's signed head as JSON; keep it (`lucid checkpoint > head.json`) to
    prove later with `lucid verify ID --checkpoint head.json` that history was not rewritten."""
    from lucid.integrity.checkpoint import Checkpoint

    try:
        head = Checkpoint.from_dict(api_client(api_url, token).checkpoint())
        head.verify()
    except (ApiError, LucidError) as exc:
        fail(str(exc))
    click.echo(json.dumps(head.to_dict(), indent=2))


@cli.command()
@click.option(
    "--size-mb", default=64, show_default=True, help="Size of the generated sample recording."
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the demo keeps its stack and files. Default: a fresh temporary directory.",
)
@click.option("--port", type=int, default=None, help="API port. Default: a free one.")
@click.option("--keep", is_flag=True, help="Keep the data directory (default: removed).")
def demo(size_mb: int, data_dir: Path | None, port: int | None, keep: bool) -> None:
    """The main job end to end: start the stack, push a sample session through, show it
    anchored, restore it byte for byte and verify it; then stop the stack and clean up."""
    from cli.demo import run_demo

    sys.exit(run_demo(size_mb, data_dir, port, keep=keep))


# Added here, not in the modules that define them: `python -m cli.main` runs this file
# as __main__, and a module importing `cli.main` to register itself would attach its
# commands to a second copy of the group, not to the one that runs.
cli.add_command(token)
for _command in lifecycle_cmds.COMMANDS:
    cli.add_command(_command)


def _add_bench() -> None:
    from bench.growth import growth
    from bench.live import live
    from bench.run import bench
    from bench.scaling import scaling

    cli.add_command(bench, "bench")
    cli.add_command(scaling, "bench-scaling")
    cli.add_command(live, "bench-live")
    cli.add_command(growth, "bench-growth")


_add_bench()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
