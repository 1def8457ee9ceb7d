"""Which bearer token the CLI sends: `--token`, else $LUCID_TOKEN, else the embedded
stack's admin token (DATA_DIR/admin.token, written 0600 by `lucid up`), else none."""

from __future__ import annotations

import os
from pathlib import Path

from lucid.crypto.tokens import read_token_file

__all__ = ["ADMIN_TOKEN_FILE", "default_token"]

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


def default_token(explicit: str | None = None, data_dir: Path | None = None) -> str | None:
    """The token to send; a group- or world-readable token file is a KeyMaterialError."""
    if explicit:
        return explicit.strip()
    if os.environ.get("LUCID_TOKEN"):
        return os.environ["LUCID_TOKEN"].strip()
    folder = data_dir or Path(os.environ.get("LUCID_DATA_DIR") or "lucid-data")
    path = folder / ADMIN_TOKEN_FILE
    return read_token_file(path) if path.exists() else None
