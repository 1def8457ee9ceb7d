"""The client side of the multi-host test, run inside a host's namespace:

python drive.py upload API FILE          -> prints the session id
python drive.py wait API SESSION_ID      -> prints the final status as JSON
python drive.py status API SESSION_ID    -> prints the status now
python drive.py download API SESSION_ID OUT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cli.client import Client


def main(argv: list[str]) -> None:
    command, api = argv[0], argv[1]
    client = Client(api, timeout=120, token=os.environ.get("LUCID_TOKEN"))
    if command == "upload":
        path = Path(argv[2])
        sid = client.create({"filename": path.name})["session_id"]
        client.upload(sid, path)
        print(sid)
    elif command == "wait":
        print(json.dumps(client.wait(argv[2], timeout=float(argv[3]) if len(argv) > 3 else 300)))
    elif command == "status":
        print(json.dumps(client.status(argv[2])))
    elif command == "download":
        print(client.download(argv[2], Path(argv[3])))
    else:
        raise SystemExit(f"expected upload, wait, status or download, got {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
