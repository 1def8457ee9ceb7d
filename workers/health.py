"""`python -m workers.health STAGE`: exit 0 if this host's worker group of STAGE answers a
ping over the broker, 1 if not. The container healthcheck and liveness probe of a worker
(distroless has no shell to build the node name `<stage>@[<prefix>.]<hostname>` in)."""

from __future__ import annotations

import socket
import sys

from lucid.settings import STAGES, load_settings


def node_name(stage: str, hostname: str | None = None) -> str:
    """The node name workers/profiles.py gives the group, with %h filled in."""
    host = hostname or socket.gethostname()
    return f"{stage}@{load_settings().prefixed(host)}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in STAGES:
        print(f"expected one stage of {', '.join(STAGES)}, got {argv}", file=sys.stderr)
        return 2
    from tasks.app import app

    name = node_name(argv[0])
    replies = app.control.ping([name], timeout=5.0) or []
    if any(name in reply for reply in replies):
        return 0
    print(f"expected {name} to answer a ping, got {replies}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
