"""Talking to a deployment's queues from outside it: another process with that
deployment's environment (celeryconfig is read once per process, from the environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
from tasks.app import app
from tasks.metrics import queue_depths
for _ in range(int(sys.argv[1])):
    # a compress task for a session no deployment has: only its own workers may take it
    app.send_task("lucid.compress", args=["0" * 32, 0, True])
print(json.dumps(queue_depths(app)))
"""


def send_and_count(env: dict[str, str], sends: int = 0) -> dict[str, int]:
    """Send `sends` compress tasks as the deployment `env` names, then return its queue
    depths per stage (tasks.metrics.queue_depths, the API's /metrics source)."""
    full = {k: v for k, v in os.environ.items() if not k.endswith("_URL")} | env
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(sends)],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    depths = json.loads(out.stdout.strip().splitlines()[-1])
    assert isinstance(depths, dict)
    return {str(k): int(v) for k, v in depths.items()}
