"""What only the filesystem backend promises: no temp files left, private files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lucid.storage.blobs import FileBlobStore as OldName
from lucid.storage.fs import FileBlobStore


def test_the_old_import_path_still_names_the_file_store() -> None:
    assert OldName is FileBlobStore


def test_file_store_leaves_no_temp_files(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "root")
    store.put("a/b", b"1")
    store.put("a/b", b"2")
    store.put("a/c", b"3", durable=False)
    assert sorted(p.name for p in (tmp_path / "root" / "a").iterdir()) == ["b", "c"]


def test_blobs_and_their_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = FileBlobStore(tmp_path / "blobs")
        store.put("sessions/a/enc/0", b"ciphertext")
        store.put("sessions/a/raw/0", b"plaintext", durable=False)
    finally:
        os.umask(old)
    for key in ("sessions/a/enc/0", "sessions/a/raw/0"):
        assert stat.S_IMODE((tmp_path / "blobs" / key).stat().st_mode) == 0o600, key
    for folder in ("", "sessions", "sessions/a", "sessions/a/raw"):
        assert stat.S_IMODE((tmp_path / "blobs" / folder).stat().st_mode) == 0o700, folder
