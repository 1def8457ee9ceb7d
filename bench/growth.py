"""`lucid bench-growth`: how cost grows with the work.

    lucid bench-growth --chunks 100,1000,5000 --chunk-mb 1 --records 100000 --out docs/benchmarks

1. Sessions of N chunks (N MiB at 1 MiB chunks): every chunk is hashed before the stop,
   as in a live session, then stop → sealed → anchored is timed (server timestamps) with
   the merkle worker group's peak RSS. Cost must stay flat per chunk.
2. Many session records: `--records` session documents are added to the metadata store
   (copies of a real session under fresh ids), then `GET /sessions` (list) and
   `GET /sessions/<id>` (status) are timed: p50/p99/max.

Writes growth.md (the tables) and growth.png (seal → anchor against chunk count).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
import pymongo

from bench.corpus import corpus_blocks
from bench.pipeline import RssSampler
from bench.upload import bench_client, post_repeated, stack_token
from cli.client import Client
from cli.servers import free_port
from cli.stack import Stack, StackConfig

__all__ = ["growth"]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _wait_hashed(client: Client, session_id: str, count: int, timeout: float = 7200) -> None:
    deadline = time.monotonic() + timeout
    while client.status(session_id)["chunks"].get("hashed", 0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"session {session_id}: {count} chunks not hashed in {timeout}s")
        time.sleep(1.0)


def seal_point(
    client: Client, source: bytes, chunks: int, chunk: int, rss_roots: dict[str, int],
    token: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One session of `chunks` full chunks plus a small final one; stop → anchor timed."""
    session_id = client.create({"bench": f"growth-{chunks}"})["session_id"]
    client.start(session_id)
    total = chunks * chunk + 1024  # the final chunk is cut by the stop
    post_repeated(str(client.http.base_url), session_id, source, total, 0, token)
    _wait_hashed(client, session_id, chunks)
    sampler = RssSampler({k: v for k, v in rss_roots.items() if k == "worker-merkle"})
    sampler.start()
    stopped = time.time()
    client._stop(session_id)
    # Times come from the server's timestamps: polling often only loads the metadata
    # server (a status aggregates the session's chunk records) while the seal runs.
    status = client.wait(session_id, timeout=3600, interval=0.5)
    peaks = sampler.stop()
    if status["state"] == "ERROR":
        raise RuntimeError(f"session failed: {status['error']}")
    sealed, anchored = _ts(status["sealed_at"]), _ts(status["anchor_at"])
    return {
        "chunks": int(status["chunk_count"]),
        "stop_to_seal_s": round(sealed - stopped, 3),
        "stop_to_anchor_s": round(anchored - stopped, 3),
        "merkle_rss_mb": peaks.get("worker-merkle"),
        "merkle_cpu_s": sampler.cpu.get("worker-merkle"),
        "ms_per_chunk": round(1000 * (anchored - stopped) / chunks, 3),
    }


def _pcts(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(1000 * ordered[-1], 2)}


def records_point(
    api_url: str, mongodb_url: str, db_name: str, records: int, headers: dict[str, str],
    requests: int = 100,
) -> dict[str, Any]:  # fmt: skip
    """Add `records` sessions (copies of a real one), then time list and status."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongodb_url)
    sessions = client[db_name]["sessions"]
    template = sessions.find_one({}, {"_id": 0})
    if template is None:
        raise RuntimeError("expected at least one session to copy, got none")
    have = sessions.count_documents({})
    now = datetime.now(UTC)
    batch: list[dict[str, Any]] = []
    for i in range(max(0, records - have)):
        created = (now - timedelta(seconds=records - i)).isoformat()
        batch.append({**template, "session_id": secrets.token_hex(16), "created_at": created,
                      "updated_at": created})  # fmt: skip
        if len(batch) == 5000:
            sessions.insert_many(batch, ordered=False)
            batch = []
    if batch:
        sessions.insert_many(batch, ordered=False)
    ids = [d["session_id"] for d in sessions.find({}, {"session_id": 1}).limit(20_000)]
    client.close()
    rng = random.Random(1)
    out: dict[str, Any] = {"records": sessions_count(mongodb_url, db_name)}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as http:
        # A later page, as a client reaches it: the `next` link (a keyset cursor) of page 1.
        first = http.get("/api/v1/sessions?limit=50")
        second = (first.json().get("next") if first.status_code == 200 else None) or (
            "/api/v1/sessions?limit=50"
        )
        paths: dict[str, Callable[[], str]] = {
            "list": lambda: "/api/v1/sessions?limit=50",
            "list_next": lambda: second,
            "list_state": lambda: "/api/v1/sessions?limit=50&state=STOPPED",
            "status": lambda: f"/api/v1/sessions/{rng.choice(ids)}",
        }
        for name, path in paths.items():
            times: list[float] = []
            errors: list[str] = []
            started = time.monotonic()
            # `requests` each, or as many as 30 s allow (at least 10): a slow list still
            # reports its figures instead of running for an hour.
            while len(times) < requests and (len(times) < 10 or time.monotonic() - started < 30):
                t = time.perf_counter()
                r = http.get(path())
                times.append(time.perf_counter() - t)
                if r.status_code >= 400:
                    errors.append(f"HTTP {r.status_code}: {r.text[:160]}")
            out[name + "_ms"] = {**_pcts(times), "n": len(times), "errors": len(errors)}
            if errors:
                out[name + "_first_error"] = errors[0]
            click.echo(json.dumps({name: out[name + "_ms"]}), err=True)
    return out


def sessions_count(mongodb_url: str, db_name: str) -> int:
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(mongodb_url) as client:
        return int(client[db_name]["sessions"].count_documents({}))


def write_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """seal → anchor and merkle RSS against chunk count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["chunks"] for r in rows]
    ax.plot(xs, [r["stop_to_anchor_s"] for r in rows], "o-", label="stop → anchored (s)")
    ax.axhline(2.0, color="gray", linestyle="--", label="target 2 s")
    ax.set_xscale("log")
    ax.set_xlabel("chunks in the session")
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, [r["merkle_rss_mb"] for r in rows], "s:", color="tab:orange",
             label="merkle workers peak RSS (MB)")  # fmt: skip
    ax2.set_ylabel("MB")
    ax2.set_ylim(bottom=0)
    ax.set_title("Lucid: seal → anchor against chunk count")
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _counts(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        counts = [int(n) for n in value.split(",") if n]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if min(counts, default=1) < 1:
        raise click.BadParameter(f"expected counts of at least 1, got {value!r}")
    return counts


@click.command("bench-growth")
@click.option("--chunks", default="100,1000,5000", show_default=True, callback=_counts)
@click.option("--chunk-mb", default=1.0, show_default=True)
@click.option("--records", default=100_000, show_default=True, help="Session records (0: skip).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write growth.json, growth.md and growth.png here (e.g. docs/benchmarks).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def growth(
    chunks: list[int], chunk_mb: float, records: int, out: Path | None, as_json: bool
) -> None:
    """Seal → anchor against chunk count, and list/status latency with many sessions."""
    chunk = int(chunk_mb * 1024 * 1024)
    source = b"".join(corpus_blocks(32 * 1024 * 1024))
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"chunk_mb": chunk_mb, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="lucid-growth-") as tmp:
        config = StackConfig(
            data_dir=Path(tmp) / "stack", api_port=free_port(), flower_port=None,
            extra_env={"CHUNK_SIZE_MB": str(chunk_mb)}, loglevel="WARNING",
        )  # fmt: skip
        with Stack(config) as stack:
            token = stack_token(stack)
            client = bench_client(stack.api_url, token)
            roots = {p.name: p.popen.pid for p in stack.procs}
            for n in chunks:
                row = seal_point(client, source, n, chunk, roots, token)
                rows.append(row)
                click.echo(json.dumps(row), err=True)
            report["seal"] = rows
            if records:
                db_name = "lucid"
                report["records"] = records_point(
                    stack.api_url, stack.urls["mongodb"], _db_name(stack, db_name), records,
                    dict(client.http.headers),
                )  # fmt: skip
    lines = render_growth(report)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "growth.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "growth.md").write_text("\n".join(lines) + "\n")
        if rows:
            write_plot(rows, out / "growth.png")
    click.echo(json.dumps(report, indent=2) if as_json else "\n".join(lines))


def _db_name(stack: Stack, default: str) -> str:
    from lucid.settings import load_settings

    return load_settings(stack.env).mongodb_database or default


def render_growth(report: dict[str, Any]) -> list[str]:
    """Markdown tables."""
    lines = [
        f"Seal → anchor against chunk count ({report['chunk_mb']} MiB chunks, "
        f"{report['cores']} cores; every chunk hashed before the stop):",
        "",
        "| chunks | stop → sealed s | stop → anchored s | ms per chunk "
        "| merkle RSS MB | merkle CPU-s |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['chunks']} | {r['stop_to_seal_s']} | {r['stop_to_anchor_s']} "
            f"| {r['ms_per_chunk']} | {r['merkle_rss_mb']} | {r['merkle_cpu_s']} |"
            for r in report.get("seal", [])
        ),
    ]
    rec = report.get("records")
    if rec:
        lines += [
            "",
            f"With {rec['records']} session records (ms):",
            "",
            "| request | p50 | p99 | max | requests | errors |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {name.removesuffix('_ms')} | {v['p50']} | {v['p99']} | {v['max']} "
                f"| {v['n']} | {v['errors']} |"
                for name, v in rec.items()
                if name.endswith("_ms")
            ),
            *(f"- {name}: {v}" for name, v in rec.items() if name.endswith("_first_error")),
        ]
    return lines
