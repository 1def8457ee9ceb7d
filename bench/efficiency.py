"""Efficiency: the CPU the work needs (the in-process limit's) against what the stack spends.

`efficiency = limit CPU-s / stack CPU-s`, the stack being every server process it runs
(API, each worker group, Redis, the metadata server, beat, the object store when used);
the benchmark's own client is counted apart. It does not depend on the core count: 1.0
means the stack adds nothing to the work, 0.5 that it spends as much again.

The at-rest floor splits the gap: the same work written, read back and synced blob by
blob as the stages do, with no queue, HTTP or metadata. `limit / floor` is the best
efficiency a pipeline that keeps every stage's output durably on disk can reach; the
stack's CPU beyond the floor is what its own processes add.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLIENT", "cpu_report", "format_groups"]

CLIENT = "bench-client"


def cpu_report(
    cpu_s: dict[str, float], limit_cpu_s: float, size_bytes: int,
    floor_cpu_s: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Stack and client CPU, efficiency, and per group CPU-s and CPU-ms per MB of input.

    With the at-rest floor's CPU (`bench.limit.measure_floor`), also the floor's own
    efficiency and what the stack spends beyond it."""
    stack = {name: cpu for name, cpu in cpu_s.items() if name != CLIENT}
    stack_cpu = sum(stack.values())
    mb = size_bytes / 1e6
    floor = (
        {}
        if floor_cpu_s is None
        else {
            "floor_cpu_s": round(floor_cpu_s, 3),
            "floor_efficiency": round(limit_cpu_s / floor_cpu_s, 3) if floor_cpu_s else None,
            "beyond_floor_cpu_s": round(stack_cpu - floor_cpu_s, 3) if stack_cpu else None,
        }
    )
    return {
        "limit_cpu_s": round(limit_cpu_s, 3),
        "stack_cpu_s": round(stack_cpu, 3),
        "client_cpu_s": round(cpu_s.get(CLIENT, 0.0), 3),
        "efficiency": round(limit_cpu_s / stack_cpu, 3) if stack_cpu else None,
        **floor,
        "limit_cpu_ms_per_mb": round(1000 * limit_cpu_s / mb, 3) if mb else None,
        "stack_cpu_ms_per_mb": round(1000 * stack_cpu / mb, 3) if mb else None,
        "groups": {
            name: {"cpu_s": round(cpu, 3), "cpu_ms_per_mb": round(1000 * cpu / mb, 3)}
            for name, cpu in sorted(stack.items(), key=lambda kv: -kv[1])
        },
    }


def format_groups(report: dict[str, Any]) -> list[str]:
    """One line per group: CPU-s and CPU-ms/MB, largest first."""
    return [
        f"  {name:18s} {g['cpu_s']:8.2f} CPU-s {g['cpu_ms_per_mb']:8.2f} CPU-ms/MB"
        for name, g in report["groups"].items()
    ]
