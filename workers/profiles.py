"""Worker groups per stage queue, with each stage's concurrency from the settings.

Each group is its own `celery worker -Q <queue> -c <N> -n <stage>@%h` process tree, so a
queue is scaled on its own: more processes (-c), more replicas on other machines, or an
autoscaler watching the Redis list named after the queue (see deploy/). The queue is the
stage's name under QUEUE_PREFIX (`<prefix>.<stage>`), and so is the node's host part, so
two deployments on one broker tell their workers apart.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from lucid.settings import STAGES, Settings

__all__ = ["STAGE_ROLES", "WorkerGroup", "beat_argv", "worker_argv", "worker_groups"]

# The role each stage's workers run in (lucid.crypto.roles): compress/encrypt/hash hold
# no private key, merkle none, anchor only the ledger signing key.
STAGE_ROLES = {
    "compress": "ingest",
    "encrypt": "ingest",
    "hash": "ingest",
    "merkle": "seal",
    "anchor": "anchor",
}


@dataclass(frozen=True)
class WorkerGroup:
    stage: str
    concurrency: int
    queue: str = ""
    prefix: str = ""

    @property
    def queue_name(self) -> str:
        """The broker queue the group consumes (the stage's name when none was given)."""
        return self.queue or self.stage

    @property
    def node_name(self) -> str:
        return f"{self.stage}@{self.prefix}.%h" if self.prefix else f"{self.stage}@%h"

    @property
    def role(self) -> str:
        """The role (LUCID_ROLE) this group's processes run in."""
        return STAGE_ROLES[self.stage]


def worker_groups(settings: Settings, stages: tuple[str, ...] | None = None) -> list[WorkerGroup]:
    """One group per stage (or per selected stage), sized from the settings."""
    chosen = stages or STAGES
    return [
        WorkerGroup(
            stage,
            settings.workers_for(stage),
            queue=settings.queue_name(stage),
            prefix=settings.queue_prefix,
        )
        for stage in chosen
    ]


def worker_argv(group: WorkerGroup, *, loglevel: str = "INFO") -> list[str]:
    """The command line of one worker group."""
    return [
        sys.executable, "-m", "celery", "-A", "tasks.app", "worker",
        "-Q", group.queue_name,
        "-c", str(group.concurrency),
        "-n", group.node_name,
        "--pool", "prefork",
        "--loglevel", loglevel,
        "--without-mingle",
        "--without-gossip",
    ]  # fmt: skip


def beat_argv(schedule: Path, *, loglevel: str = "INFO") -> list[str]:
    """The command line of the one `celery beat` that sends the periodic reconcile sweep."""
    return [
        sys.executable, "-m", "celery", "-A", "tasks.app", "beat",
        "--schedule", str(schedule),
        "--loglevel", loglevel,
    ]  # fmt: skip
