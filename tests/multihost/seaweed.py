"""Run SeaweedFS (cli.servers.start_seaweedfs) in the foreground until SIGTERM/SIGKILL:
`python seaweed.py DATA_DIR PORT`; prints the endpoint URL once it answers."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from cli import servers

if __name__ == "__main__":
    # looked up by name: it comes with the S3 blob store (h9), which this file predates
    start = servers.__dict__["start_seaweedfs"]
    proc, url = start(Path(sys.argv[1]), port=int(sys.argv[2]))
    print(url, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    finally:
        proc.stop()
