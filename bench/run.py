"""`lucid bench`: the pipeline against the in-process limit, measured in one run.

The limit is the same chunk → compress → encrypt → hash work on a plain process pool with
one process per core (no queue, no HTTP, no database). The pipeline is the same input
uploaded over HTTP to the embedded stack (self-started unless --api is given) until the
root is anchored. Prints MB/s of both, their ratio, seal-to-anchor time, the per-stage
time split and the peak RSS of the API and of each worker group.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from bench.corpus import write_corpus
from bench.efficiency import cpu_report, format_groups
from bench.limit import LimitResult, measure_floor, measure_limit
from bench.pipeline import measure_pipeline
from bench.upload import stack_token
from cli.auth import default_token
from cli.servers import free_port
from cli.stack import Stack, StackConfig


def _stack_env(chunk_mb: float, compression: str, level: int, encryption: str) -> dict[str, str]:
    return {
        "CHUNK_SIZE_MB": str(chunk_mb),
        "COMPRESSION_ALGORITHM": compression,
        "COMPRESSION_LEVEL": str(level),
        "ENCRYPTION_ALGORITHM": encryption,
    }


def run_once(
    path: Path, api: str | None, env: dict[str, str], work_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pipeline run (on a fresh embedded stack unless `api`) and its settings."""
    if api:
        return measure_pipeline(api, path, token=default_token()).__dict__, {}
    config = StackConfig(
        data_dir=work_dir, api_port=free_port(), flower_port=None, extra_env=env, loglevel="WARNING"
    )
    # The stack's own check: it knows that BLOB_BACKEND=s3 alone means "start SeaweedFS".
    settings = Stack(config).check()
    with Stack(config) as stack:
        roots = {p.name: p.popen.pid for p in stack.procs}
        result = measure_pipeline(stack.api_url, path, roots, stack_token(stack)).__dict__
    workers = {
        stage: settings.workers_for(stage)
        for stage in ("compress", "encrypt", "hash", "merkle", "anchor")
    }
    return result, workers


@click.command()
@click.option("--size-mb", default=200, show_default=True, help="Size of the generated corpus.")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this recording instead.",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the generated corpus.")
@click.option("--chunk-mb", default=10.0, show_default=True)
@click.option("--compression", default="zstd", show_default=True)
@click.option("--level", default=6, show_default=True)
@click.option("--encryption", default="AES-256-GCM", show_default=True)
@click.option("--api", default=None, help="Measure a running stack instead of starting one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write bench.json and bench.md here (e.g. docs/benchmarks).",
)
def bench(
    size_mb: int, file: Path | None, seed: int, chunk_mb: float, compression: str, level: int,
    encryption: str, api: str | None, as_json: bool, out: Path | None,
) -> None:  # fmt: skip
    """Measure the pipeline against the in-process limit on the same input and settings."""
    env = _stack_env(chunk_mb, compression, level, encryption)
    chunk_size = int(chunk_mb * 1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="lucid-bench-") as tmp:
        work = Path(tmp)
        path = file or write_corpus(work / "corpus.bin", size_mb * 1024 * 1024, seed)
        limit = measure_limit(path, chunk_size, compression, level, encryption)
        floor = measure_floor(path, chunk_size, compression, level, encryption, work / "floor")
        pipeline, workers = run_once(path, api, env, work / "stack")
        size = path.stat().st_size
    report = summarize(
        size, limit, floor, pipeline, workers,
        {"chunk_mb": chunk_mb, "compression": f"{compression}-{level}", "encryption": encryption,
         "corpus": str(file) if file else f"generated, seed {seed}"},
    )  # fmt: skip
    lines = render(report)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "bench.md").write_text("```\n" + "\n".join(lines) + "\n```\n")
    click.echo(json.dumps(report, indent=2) if as_json else "\n".join(lines))


def summarize(
    size: int, limit: LimitResult, floor: LimitResult, pipeline: dict[str, Any],
    workers: dict[str, int], settings: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """One run's figures as one JSON-able dict."""
    cores = limit.processes  # one per core
    cpu = cpu_report(pipeline["cpu_s"], limit.cpu_s, size, floor_cpu_s=floor.cpu_s)
    return {
        "input_mb": round(size / 1e6, 1),
        "cores": os.cpu_count(),
        "settings": {**settings, "workers": workers},
        "limit_mbps": round(limit.mbps, 1),
        "limit_processes": limit.processes,
        "limit_stage_cpu_s": {k: round(v, 3) for k, v in limit.stage_seconds.items()},
        "floor_mbps": round(floor.mbps, 1),
        "pipeline_mbps": round(pipeline["mbps"], 1),
        "ratio": round(pipeline["mbps"] / limit.mbps, 3),
        "pipeline_s": round(pipeline["seconds"], 3),
        "upload_s": round(pipeline["upload_s"], 3),
        "seal_to_anchor_s": round(pipeline["seal_to_anchor_s"], 3),
        "chunks": pipeline["chunks"],
        "stage_seconds": pipeline["stage_seconds"],
        "peak_rss_mb": pipeline["peak_rss_mb"],
        "cpu": cpu,
        # Every process of the stack is counted only when the bench started it (not --api).
        "cpu_bound_mbps": (
            round(size / (cpu["stack_cpu_s"] / cores) / 1e6, 1)
            if workers and cpu["stack_cpu_s"]
            else None
        ),
    }


def render(out: dict[str, Any]) -> list[str]:
    """The human-readable report."""
    s, cpu = out["settings"], out["cpu"]
    lines = [
        f"input            {out['input_mb']} MB ({s['corpus']}), {out['chunks']} chunks of "
        f"{s['chunk_mb']} MiB, {s['compression']}, {s['encryption']}, {out['cores']} cores",
        f"workers          {json.dumps(s['workers'])}",
        f"in-process limit {out['limit_mbps']:8.1f} MB/s  "
        f"({out['limit_processes']} processes, no queue/HTTP/DB)",
        f"pipeline         {out['pipeline_mbps']:8.1f} MB/s  (upload → anchored root)",
        f"ratio            {out['ratio']:8.3f}",
        f"upload           {out['upload_s']:8.3f} s",
        f"seal → anchor    {out['seal_to_anchor_s']:8.3f} s  (last byte uploaded → root anchored)",
        f"limit CPU        {cpu['limit_cpu_s']:8.2f} CPU-s  "
        f"({cpu['limit_cpu_ms_per_mb']} CPU-ms/MB; stages {json.dumps(out['limit_stage_cpu_s'])})",
        f"stack CPU        {cpu['stack_cpu_s']:8.2f} CPU-s  "
        f"({cpu['stack_cpu_ms_per_mb']} CPU-ms/MB)",
        f"efficiency       {cpu['efficiency']:8.3f}  (limit CPU / stack CPU)"
        if cpu["efficiency"] is not None
        else "efficiency            n/a",
        f"at-rest floor    {cpu['floor_cpu_s']:8.2f} CPU-s  ({out['floor_mbps']} MB/s; the "
        "limit's work written, read back and synced as the stages do, through the file blob "
        "store; no queue/HTTP/DB)",
        f"floor efficiency {cpu['floor_efficiency']:8.3f}  (limit CPU / floor CPU: the best "
        "a pipeline that stores each stage durably on disk can reach)",
        f"beyond the floor {cpu['beyond_floor_cpu_s']:8.2f} CPU-s  (stack CPU - floor CPU: "
        "HTTP, queue, metadata and their processes)"
        if cpu["beyond_floor_cpu_s"] is not None
        else "beyond the floor      n/a",
        f"client CPU       {cpu['client_cpu_s']:8.2f} CPU-s  (counted apart)",
        "CPU by group",
        *format_groups(cpu),
        "peak RSS (MB)    " + json.dumps(out["peak_rss_mb"]),
        "stage seconds    " + json.dumps(out["stage_seconds"]),
    ]
    if out["cpu_bound_mbps"]:
        lines.append(
            f"CPU-bound at     {out['cpu_bound_mbps']:8.1f} MB/s  (the stack's CPU on "
            f"{out['limit_processes']} cores, were every core busy all along)"
        )
    return lines


def main(args: list[str]) -> int:
    """Entry point for `lucid bench ARGS`."""
    try:
        bench.main(args=args, prog_name="lucid bench", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    bench()
