"""The filesystem blob backend: each blob a file under one root folder (DATA_DIR/blobs).

Write-once comes from the kernel: a blob is written to a temp file, synced, then
hard-linked into place, and a link onto an existing name fails.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from lucid.errors import InsufficientStorage, InvalidInput
from lucid.storage.blobs import BlobData, check_key, check_prefix, check_range

__all__ = ["FileBlobStore"]

# "~" can never appear in a key, so temp files never show up as blobs.
_TMP_PREFIX = "~tmp-"


@contextmanager
def _disk_full_is_insufficient_storage() -> Iterator[None]:
    """ENOSPC/EDQUOT become InsufficientStorage: a transient error (space can return), so
    a stage retries it with backoff and the API answers 507 naming it."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise InsufficientStorage(
            f"insufficient storage: disk full ({errno.errorcode[exc.errno]}); "
            "free space or raise the quota, then retry"
        ) from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """Blobs as files under `root`: temp file → fsync → link into place → fsync dir."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._make_dirs(self.root)
        if self.root.stat().st_mode & 0o077:
            self.root.chmod(0o700)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            try:
                new.mkdir(mode=0o700)
            except FileExistsError:
                if not new.is_dir():
                    raise InvalidInput(f"{new} is a blob, not a folder") from None
            # A new directory entry is only durable once its parent is synced.
            _fsync_dir(new.parent)

    def _link(self, source: Path, final: Path, *, durable: bool = True) -> bool:
        """Hard-link the synced `source` to `final` unless a blob is already there."""
        try:
            os.link(source, final)
        except FileExistsError:
            if not final.is_file():
                raise InvalidInput(f"blob key {final} is a folder") from None
            return False
        if durable:
            _fsync_dir(final.parent)
        return True

    def put(self, key: str, data: BlobData, *, durable: bool = True) -> bool:
        """Store `data` under `key` unless a blob is already there (then return False).

        `durable=False` skips the fsyncs, for intermediates that can be recomputed.
        """
        final = self._path(key)
        if final.is_file():
            return False
        with _disk_full_is_insufficient_storage():
            tmp = self._write_temp(final.parent, data, durable=durable)
            try:
                return self._link(tmp, final, durable=durable)
            finally:
                tmp.unlink(missing_ok=True)

    def _write_temp(self, directory: Path, data: BlobData, *, durable: bool = True) -> Path:
        for attempt in range(3):
            self._make_dirs(directory)
            try:
                fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
                break
            except FileNotFoundError:  # a concurrent delete_prefix pruned the folder
                if attempt == 2:
                    raise
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def open(self, key: str) -> BinaryIO:
        """A binary reader over the blob, for streaming large blobs."""
        path = self._path(key)
        try:
            return open(path, "rb")  # the caller closes it
        except (IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(f"no blob {key!r}") from None

    @contextmanager
    def view(self, key: str) -> Iterator[memoryview]:
        """The whole blob as a read-only memory map: no copy, no fresh 10 MiB buffer.

        Stages hand it straight to zstd, AEAD and BLAKE3. Reading a chunk into new memory
        and then compressing it measured 1.5x the CPU of compressing the mapped file.
        """
        with self.open(key) as blob:
            if os.fstat(blob.fileno()).st_size == 0:
                yield memoryview(b"")  # an empty file cannot be mapped
                return
            with (
                mmap.mmap(blob.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
                memoryview(mapped) as view,
            ):
                yield view

    def get(self, key: str) -> bytes:
        """The whole blob."""
        with self.open(key) as blob:
            return blob.read()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from offset `start`: shorter at the end, empty past it."""
        check_range(start, length)
        with self.open(key) as blob:
            blob.seek(start)
            return blob.read(length)

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key`."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """The blob's length in bytes."""
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no blob {key!r}")
        return path.stat().st_size

    def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose key starts with `prefix`; return how many."""
        removed = 0
        for key in list(self.keys(prefix)):
            path = self.root / key
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
            # Prune folders left empty; a folder still in use is simply not empty.
            for parent in path.parents:
                if parent == self.root or not parent.is_relative_to(self.root):
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
        return removed

    def keys(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix`, in string order."""
        check_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        return self._walk(start, f"{folder}/" if folder else "", prefix)

    def _walk(self, directory: Path, key_prefix: str, prefix: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting folders as "name/" makes the depth-first walk yield keys in string order.
        named = sorted(
            ((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in entries),
            key=lambda pair: pair[0],
        )
        for name, entry in named:
            key = key_prefix + name
            if "~" in name:
                continue
            if name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
                yield key
