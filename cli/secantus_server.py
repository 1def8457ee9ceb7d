"""SecantusDB, as the embedded default runs it: the server's own command line, with one
fix to how its connection threads use WiredTiger.

The fix. Each connection thread keeps cached WiredTiger cursors, and a cursor left on a
page holds a hazard pointer on it until the thread's next write resets it, which is after
that write has waited for the collection's lock. Under concurrent writers (live ingest:
every append rewrites its session document and index entries), the waiting threads'
cursors sit on the collection's hot pages. When such a page grows past WiredTiger's
in-memory limit (about 5 MB of versions) it must be evicted or split before it is used
again, and neither can happen while another session holds a hazard pointer on it. The lock
holder then sleeps inside WiredTiger on every access: measured with 20 writers, 230
writes/s, then 13/s for good after about 9,000 writes ("hazard pointer blocked page
eviction" in WiredTiger's statistics). With one writer the page is evicted and nothing
slows. Resetting the thread's cached cursors when an operation starts, before it can wait
for a lock, releases those pointers; each write's own transaction already resets them, a
moment later. Checked against secantusdb 0.7.0b3 (the newest on PyPI): remove this when a
release does it itself.

`python -m cli.secantus_server --help` shows the server's options.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

from secantus import cli as secantus_cli
from secantus.storage import Storage

# A later release may rename what the fix wraps: then the server runs as released.
_refresh_read_snapshot: Callable[[Any], None] | None = getattr(
    Storage, "_refresh_read_snapshot", None
)


def _release_cursors_then_refresh(self: Any) -> None:
    """Reset the calling thread's cached cursors, then take a fresh read snapshot as the
    server does at the top of every operation. Not inside a transaction (a user's, or the
    one a write runs in, marked by `defer_minted`), whose cursors may be in use. Installed
    by `patch` only where the release has the method it wraps."""
    tls = self._tls
    if getattr(tls, "user_txn", None) is None and not getattr(tls, "defer_minted", False):
        for cursor in (getattr(tls, "cursors", None) or {}).values():
            with contextlib.suppress(Exception):
                cursor.reset()
    assert _refresh_read_snapshot is not None
    _refresh_read_snapshot(self)


def patch() -> bool:
    """Apply the fix to SecantusDB's storage class (idempotent); False, with a warning,
    when this release has nothing of that name to wrap."""
    if _refresh_read_snapshot is None:
        print(
            "lucid: this SecantusDB release has no Storage._refresh_read_snapshot; "
            "running it without Lucid's cursor fix (see cli/secantus_server.py)",
            file=sys.stderr,
        )
        return False
    Storage._refresh_read_snapshot = _release_cursors_then_refresh  # type: ignore[method-assign]
    return True


def main() -> int:
    patch()
    return int(secantus_cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
