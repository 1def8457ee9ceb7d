"""The data directory's permissions: only the service user may read anything in it.

Staging files and raw chunk blobs hold plaintext, and the key files secrets, so the data
dir is 0700 and everything is created private from the start: `secure_data_dir` sets the
process umask to 0077 (inherited by every process the stack starts) and creates the
directory, or takes away the group and other bits of one that was looser, logging it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "secure_data_dir"]

PRIVATE_UMASK = 0o077
log = logging.getLogger(__name__)


def secure_data_dir(path: Path) -> Path:
    """Create or fix `path` as a 0700 directory and make new files private; return it.

    The directory's direct subfolders are fixed too (a looser `blobs/` or `keys/` left
    by an older version); files below them are behind a 0700 directory either way.
    """
    os.umask(PRIVATE_UMASK)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for directory in (path, *(p for p in path.iterdir() if p.is_dir() and not p.is_symlink())):
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o077:
            directory.chmod(mode & 0o700)
            log.warning(
                "event=data_dir_permissions_fixed path=%s expected=0700 got=%04o", directory, mode
            )
    return path
