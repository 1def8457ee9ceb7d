"""`lucid bench-live`: concurrent live sessions, as recorders really send.

    lucid bench-live --sessions 100 --rate-mbps 1 --piece-kb 64 --duration 60

Each session starts, POSTs small pieces to /data at a steady rate (with Upload-Offset),
stops, and is waited on until its root is anchored; then every session is downloaded and
compared byte for byte with what was sent. Prints sustained MB/s, append latency
p50/p99/max, CPU by group and efficiency, and per session the time from stop to anchored
root. The client is plain asyncio (one keep-alive connection per session), so its own CPU
stays small; it is counted apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from bench.corpus import write_corpus
from bench.efficiency import cpu_report, format_groups
from bench.limit import measure_limit
from bench.pipeline import RssSampler
from bench.upload import auth_headers, stack_token
from cli.servers import free_port
from cli.stack import Stack, StackConfig

__all__ = ["live"]

_SOURCE_MB = 64  # the bytes sessions send are windows of one generated recording


@dataclass
class SessionRun:
    index: int
    session_id: str = ""
    sent: int = 0
    digest: str = ""
    latencies: list[float] = field(default_factory=list)
    stopped_at: float = 0.0
    anchored_at: float | None = None
    restored_ok: bool | None = None
    error: str | None = None


class _Http:
    """HTTP/1.1 over one keep-alive asyncio connection: small requests, little CPU."""

    def __init__(self, api_url: str, headers: dict[str, str]) -> None:
        url = urlsplit(api_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):  # the server may close an idle keep-alive connection
            try:
                return await self._once(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _once(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + self.extra
            + "\r\n"
        )
        self.writer.write(head.encode())
        if body:
            self.writer.write(body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        got = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                got[k.strip().lower()] = v.strip()
        data = await self.reader.readexactly(int(got.get("content-length", "0")))
        if got.get("connection", "").lower() == "close":
            await self.close()
        return status, got, data

    async def json(self, method: str, path: str, body: Any = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else b""
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        status, _, data = await self.request(method, path, payload, hdrs)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:200]!r}")
        return json.loads(data) if data else None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def _window(source: bytes, index: int, total: int) -> bytes:
    """Session `index`'s bytes: `total` bytes of the source from its own start, wrapping."""
    start = (index * 7_919 * 4_096) % len(source)
    out = bytearray()
    while len(out) < total:
        take = min(total - len(out), len(source) - start)
        out += source[start : start + take]
        start = 0
    return bytes(out)


async def _session(
    api: str, headers: dict[str, str], run: SessionRun, data: bytes, piece: int, interval: float,
    start_at: float,
) -> None:  # fmt: skip
    http = _Http(api, headers)
    try:
        run.session_id = (await http.json("POST", "/api/v1/sessions", {"metadata": {}}))[
            "session_id"
        ]
        base = f"/api/v1/sessions/{run.session_id}"
        await http.json("POST", base + "/start")
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        next_at = time.monotonic()
        for offset in range(0, len(data), piece):
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            body = data[offset : offset + piece]
            t = time.perf_counter()
            status, _, reply = await http.request(
                "POST", base + "/data", body,
                {"Content-Type": "application/octet-stream", "Upload-Offset": str(offset)},
            )  # fmt: skip
            run.latencies.append(time.perf_counter() - t)
            if status >= 400:
                raise RuntimeError(f"POST /data at {offset}: HTTP {status}: {reply[:200]!r}")
            run.sent = offset + len(body)
        await http.json("POST", base + "/stop")
        run.stopped_at = time.time()
    except Exception as exc:  # reported per session; the others go on
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        await http.close()


async def _wait_anchored(api: str, headers: dict[str, str], runs: list[SessionRun]) -> None:
    """Poll slowly (once a second); times come from the server's anchor_at."""
    http = _Http(api, headers)
    pending = [r for r in runs if r.error is None]
    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        still = []
        for run in pending:
            status = await http.json("GET", f"/api/v1/sessions/{run.session_id}")
            if status["state"] == "ERROR":
                run.error = f"session failed: {status.get('error')}"
            elif (status.get("anchor") or {}).get("status") == "confirmed":
                run.anchored_at = datetime.fromisoformat(status["anchor_at"]).timestamp()
            else:
                still.append(run)
        pending = still
        if pending:
            await asyncio.sleep(1.0)
    await http.close()


async def _restore(api: str, headers: dict[str, str], runs: list[SessionRun]) -> None:
    http = _Http(api, headers)
    for run in runs:
        if run.error is not None:
            continue
        status, _, data = await http.request("GET", f"/api/v1/sessions/{run.session_id}/download")
        run.restored_ok = status == 200 and hashlib.sha256(data).hexdigest() == run.digest
    await http.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _drive(
    api: str, headers: dict[str, str], source: bytes, sessions: int, per_session: int,
    piece: int, interval: float,
) -> tuple[list[SessionRun], float]:  # fmt: skip
    runs = [SessionRun(i) for i in range(sessions)]
    datas = [_window(source, i, per_session) for i in range(sessions)]
    for run, data in zip(runs, datas, strict=True):
        run.digest = hashlib.sha256(data).hexdigest()
    start_at = time.monotonic() + 2.0  # every session created and started before the clock
    spread = interval / sessions  # stagger the sessions' pieces over one interval
    await asyncio.gather(
        *(
            _session(api, headers, r, d, piece, interval, start_at + i * spread)
            for i, (r, d) in enumerate(zip(runs, datas, strict=True))
        )
    )
    sending_s = time.monotonic() - start_at
    await _wait_anchored(api, headers, runs)
    return runs, sending_s


def run_live(
    api: str, headers: dict[str, str], source: bytes, sessions: int, rate_mbps: float,
    piece_kb: int, duration: float, rss_roots: dict[str, int] | None,
) -> dict[str, Any]:  # fmt: skip
    """Drive the sessions against `api`; the figures as a dict (CPU only with rss_roots)."""
    piece = piece_kb * 1024
    interval = piece / (rate_mbps * 1e6)
    per_session = int(rate_mbps * 1e6 * duration) // piece * piece
    sampler = RssSampler(rss_roots or {})
    sampler.start()
    runs, sending_s = asyncio.run(
        _drive(api, headers, source, sessions, per_session, piece, interval)
    )
    peaks = sampler.stop()
    asyncio.run(_restore(api, headers, runs))
    latencies = [x for r in runs for x in r.latencies]
    total = sum(r.sent for r in runs)
    anchored = [r for r in runs if r.anchored_at is not None]
    anchored_ids = [r.session_id for r in anchored]
    stop_to_anchor = [round((r.anchored_at or 0.0) - r.stopped_at, 3) for r in anchored]
    return {
        "sessions": sessions,
        "rate_mbps": rate_mbps,
        "piece_kb": piece_kb,
        "duration_s": duration,
        "sent_mb": round(total / 1e6, 1),
        "sending_s": round(sending_s, 2),
        "sustained_mbps": round(total / sending_s / 1e6, 2),
        "appends": len(latencies),
        "append_ms": {
            "p50": round(1000 * _pct(latencies, 0.50), 1),
            "p99": round(1000 * _pct(latencies, 0.99), 1),
            "max": round(1000 * max(latencies, default=0.0), 1),
        },
        "stop_to_anchor_s": {
            "p50": _pct(stop_to_anchor, 0.5),
            "max": max(stop_to_anchor, default=None),
            "per_session": dict(zip(anchored_ids, stop_to_anchor, strict=True)),
        },
        "anchored": len(stop_to_anchor),
        "restored_equal": sum(1 for r in runs if r.restored_ok),
        "errors": [f"session {r.index}: {r.error}" for r in runs if r.error][:20],
        "peak_rss_mb": peaks,
        "cpu_s": sampler.cpu,
    }


@click.command("bench-live")
@click.option("--sessions", default=100, show_default=True)
@click.option("--rate-mbps", default=1.0, show_default=True, help="MB/s per session.")
@click.option("--piece-kb", default=64, show_default=True, help="Bytes per POST /data.")
@click.option("--duration", default=60.0, show_default=True, help="Seconds each session sends.")
@click.option("--chunk-mb", default=10.0, show_default=True)
@click.option("--api", default=None, help="Drive a running stack instead of starting one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write live.json and live.md here (e.g. docs/benchmarks).",
)
def live(
    sessions: int, rate_mbps: float, piece_kb: int, duration: float, chunk_mb: float,
    api: str | None, as_json: bool, out: Path | None,
) -> None:  # fmt: skip
    """N concurrent live sessions at a steady rate: throughput, latency, CPU, anchoring."""
    with tempfile.TemporaryDirectory(prefix="lucid-live-") as tmp:
        work = Path(tmp)
        path = write_corpus(work / "source.bin", _SOURCE_MB * 1024 * 1024)
        source = path.read_bytes()
        chunk = int(chunk_mb * 1024 * 1024)
        limit = measure_limit(path, chunk, "zstd", 6, "AES-256-GCM")
        if api:
            report = run_live(
                api, auth_headers(), source, sessions, rate_mbps, piece_kb, duration, None
            )
        else:
            config = StackConfig(
                data_dir=work / "stack", api_port=free_port(), flower_port=None,
                extra_env={"CHUNK_SIZE_MB": str(chunk_mb)}, loglevel="WARNING",
            )  # fmt: skip
            with Stack(config) as stack:
                roots = {p.name: p.popen.pid for p in stack.procs}
                report = run_live(
                    stack.api_url, auth_headers(stack_token(stack)), source, sessions,
                    rate_mbps, piece_kb, duration, roots,
                )  # fmt: skip
    # The limit ran on the source; its CPU scales with the bytes (same mix, same chunks).
    limit_cpu = limit.cpu_s * (report["sent_mb"] * 1e6) / len(source)
    report["cpu"] = cpu_report(report.pop("cpu_s"), limit_cpu, int(report["sent_mb"] * 1e6))
    report["cores"] = os.cpu_count()
    lines = render_live(report)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "live.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "live.md").write_text("```\n" + "\n".join(lines) + "\n```\n")
    click.echo(json.dumps(report, indent=2) if as_json else "\n".join(lines))


def render_live(r: dict[str, Any]) -> list[str]:
    """The human-readable report."""
    cpu, lat, anc = r["cpu"], r["append_ms"], r["stop_to_anchor_s"]
    lines = [
        f"live sessions    {r['sessions']} x {r['rate_mbps']} MB/s in {r['piece_kb']} KiB pieces "
        f"for {r['duration_s']} s, {r['cores']} cores",
        f"sustained        {r['sustained_mbps']:8.2f} MB/s  "
        f"({r['sent_mb']} MB in {r['sending_s']} s)",
        f"append latency   p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
        f"({r['appends']} appends)",
        f"stop → anchored  p50 {anc['p50']} s, max {anc['max']} s "
        f"({r['anchored']}/{r['sessions']} anchored)",
        f"restored equal   {r['restored_equal']}/{r['sessions']}",
    ]
    if cpu["efficiency"] is not None and cpu["stack_cpu_s"]:
        lines += [
            f"efficiency       {cpu['efficiency']:8.3f}  (limit {cpu['limit_cpu_s']} CPU-s / "
            f"stack {cpu['stack_cpu_s']} CPU-s; client {cpu['client_cpu_s']} CPU-s apart)",
            "CPU by group",
            *format_groups(cpu),
        ]
    lines += [f"error            {e}" for e in r["errors"]]
    lines.append(
        "per session stop → anchored (s): " + json.dumps(list(anc["per_session"].values()))
    )
    return lines
