# Flower configuration for production: authentication required, persistent state.
# Flower >= 2.1 is required with Celery >= 5.5. Its /metrics has no queue depth: scrape the
# API's /metrics (lucid_queue_depth{stage=...}) for that.
#
# The user:password comes from the file FLOWER_BASIC_AUTH_FILE names (a mounted secret) or
# from FLOWER_BASIC_AUTH. There is no default: without one, Flower refuses to start rather
# than serve its remote control (shut down workers, revoke tasks) to anyone.
import os
from pathlib import Path

_file = os.environ.get("FLOWER_BASIC_AUTH_FILE")
_auth = Path(_file).read_text().strip() if _file else os.environ.get("FLOWER_BASIC_AUTH", "")
if ":" not in _auth or not _auth.split(":", 1)[1]:
    raise SystemExit(
        "expected FLOWER_BASIC_AUTH_FILE (or FLOWER_BASIC_AUTH) to hold user:password, "
        f"got {'an unreadable value' if _auth else 'none'}"
    )

port = 5555
persistent = True
db = os.environ.get("FLOWER_DB", "/tmp/flower.db")  # noqa: S108 (a tmpfs of its own)
max_tasks = 50000
basic_auth = [_auth]
