"""Scaling picture: pipeline throughput as the compress stage's worker count varies.

    lucid bench-scaling --workers 1,2,4,8 --size-mb 100 --out bench-results

Each point is a fresh embedded stack with COMPRESS_WORKERS=N (other stages at their
defaults) measured on the same input; writes scaling.md (a table) and scaling.png.
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
from bench.run import run_once


def write_plot(rows: list[dict[str, Any]], limit_mbps: float, path: Path) -> None:
    """throughput against workers, with the in-process limit as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [r["workers"] for r in rows], [r["pipeline_mbps"] for r in rows], "o-", label="pipeline"
    )
    ax.axhline(limit_mbps, color="gray", linestyle="--", label="in-process limit")
    ax.set_xlabel("compress workers (processes)")
    ax.set_ylabel("MB/s, upload → anchored root")
    ax.set_ylim(bottom=0)
    ax.set_title("Lucid: throughput against compress-stage workers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _counts(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        counts = [int(n) for n in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected worker counts of at least 1, got {value!r}")
    return counts


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "bench-scaling draws its plot with matplotlib: pip install -e '.[bench]'"
        ) from None


@click.command("bench-scaling")
@click.option(
    "--workers",
    default="1,2,4,8",
    show_default=True,
    callback=_counts,
    help="Compress worker counts, comma-separated.",
)
@click.option("--size-mb", default=100, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
)
def scaling(workers: list[int], size_mb: int, out: Path) -> None:
    """Vary COMPRESS_WORKERS; write a table (scaling.md) and a plot (scaling.png)."""
    _require_matplotlib()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lucid-scaling-") as tmp:
        path = write_corpus(Path(tmp) / "corpus.bin", size_mb * 1024 * 1024)
        limit = measure_limit(path, 10 * 1024 * 1024, "zstd", 6, "AES-256-GCM")
        for n in workers:
            result, _ = run_once(path, None, {"COMPRESS_WORKERS": str(n)}, Path(tmp) / f"stack-{n}")
            row = {
                "workers": n,
                "pipeline_mbps": round(result["mbps"], 1),
                "ratio": round(result["mbps"] / limit.mbps, 3),
                "seal_to_anchor_s": round(result["seal_to_anchor_s"], 3),
                "compress_rss_mb": result["peak_rss_mb"].get("worker-compress"),
            }
            rows.append(row)
            click.echo(json.dumps(row), err=True)
    table = [
        f"In-process limit: {limit.mbps:.1f} MB/s ({limit.processes} processes), "
        f"input {size_mb} MiB, {os.cpu_count()} cores; the other stages at their defaults.",
        "",
        "| compress workers | pipeline MB/s | ratio to limit | seal → anchor s | compress RSS MB |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r['workers']} | {r['pipeline_mbps']} | {r['ratio']:.1%} | {r['seal_to_anchor_s']} "
            f"| {r['compress_rss_mb']} |"
            for r in rows
        ),
    ]
    (out / "scaling.md").write_text("\n".join(table) + "\n")
    write_plot(rows, limit.mbps, out / "scaling.png")
    click.echo("\n".join(table))
    click.echo(f"\nwrote {out / 'scaling.md'} and {out / 'scaling.png'}")
