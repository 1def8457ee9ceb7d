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
from bench.limit import measure_limit
from bench.pipeline import measure_pipeline
from cli.auth import default_token
from cli.servers import free_port
from cli.stack import Stack, StackConfig
from lucid.settings import load_settings


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
    settings = load_settings({**os.environ, **env})
    if api:
        return measure_pipeline(api, path, token=default_token()).__dict__, {}
    config = StackConfig(
        data_dir=work_dir, api_port=free_port(), flower_port=None, extra_env=env, loglevel="WARNING"
    )
    with Stack(config) as stack:
        roots = {p.name: p.popen.pid for p in stack.procs}
        result = measure_pipeline(stack.api_url, path, roots, token=stack.admin_token).__dict__
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
@click.option("--chunk-mb", default=10.0, show_default=True)
@click.option("--compression", default="zstd", show_default=True)
@click.option("--level", default=6, show_default=True)
@click.option("--encryption", default="AES-256-GCM", show_default=True)
@click.option("--api", default=None, help="Measure a running stack instead of starting one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(
    size_mb: int, file: Path | None, chunk_mb: float, compression: str, level: int,
    encryption: str, api: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Measure the pipeline against the in-process limit on the same input and settings."""
    env = _stack_env(chunk_mb, compression, level, encryption)
    chunk_size = int(chunk_mb * 1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="lucid-bench-") as tmp:
        work = Path(tmp)
        path = file or write_corpus(work / "corpus.bin", size_mb * 1024 * 1024)
        limit = measure_limit(path, chunk_size, compression, level, encryption)
        pipeline, workers = run_once(path, api, env, work / "stack")
        size = path.stat().st_size
    pipeline_cpu = sum(pipeline["cpu_s"].values())
    cores = limit.processes  # one per core
    out = {
        "input_mb": round(size / 1e6, 1),
        "settings": {
            "chunk_mb": chunk_mb,
            "compression": f"{compression}-{level}",
            "encryption": encryption,
            "workers": workers,
        },
        "limit_mbps": round(limit.mbps, 1),
        "limit_processes": limit.processes,
        "limit_stage_seconds": {k: round(v, 3) for k, v in limit.stage_seconds.items()},
        "pipeline_mbps": round(pipeline["mbps"], 1),
        "ratio": round(pipeline["mbps"] / limit.mbps, 3),
        "pipeline_s": round(pipeline["seconds"], 3),
        "upload_s": round(pipeline["upload_s"], 3),
        "seal_to_anchor_s": round(pipeline["seal_to_anchor_s"], 3),
        "chunks": pipeline["chunks"],
        "stage_seconds": pipeline["stage_seconds"],
        "peak_rss_mb": pipeline["peak_rss_mb"],
        "cpu_s": pipeline["cpu_s"],
        "limit_cpu_s": round(sum(limit.stage_seconds.values()), 3),
        "pipeline_cpu_s": round(pipeline_cpu, 2),
        # Every process of the stack is counted only when the bench started it (not --api).
        "cpu_bound_mbps": round(size / (pipeline_cpu / cores) / 1e6, 1) if workers else None,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"input            {out['input_mb']} MB, {out['chunks']} chunks of {chunk_mb} MiB, "
               f"{compression}-{level}, {encryption}")  # fmt: skip
    click.echo(
        f"in-process limit {out['limit_mbps']:8.1f} MB/s  "
        f"({limit.processes} processes, no queue/HTTP/DB)"
    )
    click.echo(f"pipeline         {out['pipeline_mbps']:8.1f} MB/s  (HTTP upload → anchored root)")
    click.echo(f"ratio            {out['ratio']:8.1%}")
    click.echo(f"upload           {out['upload_s']:8.3f} s")
    click.echo(
        f"seal → anchor    {out['seal_to_anchor_s']:8.3f} s  (last byte uploaded → root anchored)"
    )
    click.echo(
        "stage seconds    pipeline "
        + json.dumps(out["stage_seconds"])
        + "  limit "
        + json.dumps(out["limit_stage_seconds"])
    )
    click.echo("peak RSS (MB)    " + json.dumps(out["peak_rss_mb"]))
    click.echo(f"CPU seconds      limit {out['limit_cpu_s']}, pipeline " + json.dumps(out["cpu_s"]))
    if out["cpu_bound_mbps"]:
        click.echo(
            f"CPU-bound at     {out['cpu_bound_mbps']:8.1f} MB/s  (the pipeline's "
            f"{out['pipeline_cpu_s']} CPU s on {cores} cores, were every core busy all along)"
        )


def main(args: list[str]) -> int:
    """Entry point for `lucid bench ARGS`."""
    try:
        bench.main(args=args, prog_name="lucid bench", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    bench()
