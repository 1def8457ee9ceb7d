"""Claim-check blob store: write-once, atomic, durable blobs addressed by relative keys.

Stages hand each other keys, never bytes; every stage may run twice, so a blob is written
once and the first complete write wins: a retry that computes different bytes (a fresh
nonce, say) gets False back and must use what is stored. Missing blobs raise the builtin
FileNotFoundError whatever the backend, so callers handle one "not found".

Keys are relative: segments of [A-Za-z0-9._-] joined by "/", no "." or ".." segment, at
most 512 characters. Prefixes in `keys` and `delete_prefix` are plain string prefixes, as
in S3: "a/b" matches "a/b/c" and "a/bc"; end a prefix with "/" to mean one folder.

Backends: `lucid.storage.fs.FileBlobStore` (files under DATA_DIR/blobs) and
`lucid.storage.s3.S3BlobStore` (an S3-compatible bucket); `lucid.runtime` picks one from
BLOB_BACKEND.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from lucid.errors import InvalidInput

if TYPE_CHECKING:
    from lucid.storage.fs import FileBlobStore

__all__ = ["MAX_KEY_LENGTH", "BlobData", "BlobStore", "FileBlobStore", "check_key", "check_prefix"]

MAX_KEY_LENGTH = 512
_SEGMENT = r"[A-Za-z0-9._-]+"
_KEY = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT})*$")
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]*$")

# What `put` takes: bytes, or a buffer it writes as is (ingest hands its chunk buffer).
BlobData = bytes | bytearray | memoryview


class BlobStore(Protocol):
    """Write-once blobs by key; `put` returns True only for the call that created the blob."""

    def put(self, key: str, data: BlobData, *, durable: bool = True) -> bool: ...
    def get(self, key: str) -> bytes: ...
    def read_range(self, key: str, start: int, length: int) -> bytes: ...
    def open(self, key: str) -> BinaryIO: ...
    def view(self, key: str) -> AbstractContextManager[memoryview]: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def keys(self, prefix: str) -> Iterator[str]: ...


def is_key(key: object) -> bool:
    """Whether `key` is a valid relative blob key (see the module docstring)."""
    return (
        isinstance(key, str)
        and len(key) <= MAX_KEY_LENGTH
        and _KEY.match(key) is not None
        and not any(part in (".", "..") for part in key.split("/"))
    )


def check_key(key: str) -> str:
    """Return `key` if it is a valid relative blob key, else raise InvalidInput."""
    if not is_key(key):
        raise InvalidInput(
            f"invalid blob key {key!r}: expected relative segments of [A-Za-z0-9._-] "
            f"joined by '/', no '.' or '..' segment, at most {MAX_KEY_LENGTH} characters"
        )
    return key


def check_prefix(prefix: str) -> str:
    """Return `prefix` if it can start a valid key ("" lists everything), else InvalidInput."""
    folders = prefix.split("/")[:-1] if isinstance(prefix, str) else []
    if (
        not isinstance(prefix, str)
        or len(prefix) > MAX_KEY_LENGTH
        or not _PREFIX.match(prefix)
        or any(part in ("", ".", "..") for part in folders)
    ):
        raise InvalidInput(f"invalid blob key prefix {prefix!r}")
    return prefix


def check_range(start: int, length: int) -> None:
    """A byte range of a blob: `start` and `length` non-negative."""
    if start < 0 or length < 0:
        raise InvalidInput(f"expected a non-negative start and length, got {start}, {length}")


def __getattr__(name: str) -> Any:
    # FileBlobStore lived here before the backends were split; keep the old import working.
    if name == "FileBlobStore":
        from lucid.storage.fs import FileBlobStore

        return FileBlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
