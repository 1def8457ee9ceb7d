"""The default anchor store: an append-only, hash-chained, Ed25519-signed JSON Lines file.

Each line is one entry (keys sorted, no spaces):

    {"entry_hash", "prev_hash", "root", "seq", "session_id", "signature", "time", "tree_size"}

    entry_hash = hex BLAKE3 of the canonical JSON (sorted keys, "," and ":" separators,
                 ASCII) of {seq, time, session_id, root, tree_size, prev_hash}
    prev_hash  = the previous entry's entry_hash, 64 zeros for seq 0
    signature  = hex Ed25519 signature over the 32 raw bytes of entry_hash

Appends from several processes are serialised by flock on a sidecar `<name>.lock` file;
each append writes one whole line and fsyncs it. A crash can still leave a partial last
line; `verify()` reports it and `append()` refuses to chain onto it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lucid.errors import Conflict, InvalidInput, KeyMaterialError, LedgerError

__all__ = ["ZERO_HASH", "Ledger", "LedgerEntry", "entry_hash_of"]

ZERO_HASH = "0" * 64
_HEX_FIELDS = {"root": None, "prev_hash": 64, "entry_hash": 64, "signature": 128}


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash_of(body: dict[str, Any]) -> str:
    """Hex BLAKE3 of the canonical JSON of an entry's signed fields."""
    return blake3.blake3(_canonical(body)).hexdigest()


def _is_hex(value: object, length: int | None) -> bool:
    if not isinstance(value, str) or not value or len(value) % 2:
        return False
    if length is not None and len(value) != length:
        return False
    return all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class LedgerEntry:
    """One anchored root; `entry_hash` and `signature` cover every other field."""

    seq: int
    time: str
    session_id: str
    root: str
    tree_size: int
    prev_hash: str
    entry_hash: str
    signature: str

    def __post_init__(self) -> None:
        for name in ("seq", "tree_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"ledger {name}: expected an integer >= 0, got {value!r}")
        for name in ("time", "session_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise InvalidInput(f"ledger {name}: expected a non-empty string")
        for name, length in _HEX_FIELDS.items():
            if not _is_hex(getattr(self, name), length):
                want = f"{length} lowercase hex chars" if length else "lowercase hex"
                raise InvalidInput(f"ledger {name}: expected {want}, got {getattr(self, name)!r}")

    def body(self) -> dict[str, Any]:
        """The fields that `entry_hash` covers."""
        data = asdict(self)
        del data["entry_hash"], data["signature"]
        return data

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (every field as stored)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        """Build from `to_dict()` output; bad input raises InvalidInput."""
        if not isinstance(data, dict):
            raise InvalidInput(f"ledger entry: expected an object, got {type(data).__name__}")
        names = set(cls.__dataclass_fields__)
        if data.keys() != names:
            raise InvalidInput(f"ledger entry: expected keys {sorted(names)}, got {sorted(data)}")
        return cls(**data)


class Ledger:
    """Append-only signed ledger at `path`; `signing_key` is only needed to append."""

    def __init__(
        self, path: Path, signing_key: Ed25519PrivateKey | None, verify_key: Ed25519PublicKey
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._signing_key = signing_key
        self._verify_key = verify_key

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    def _read(self) -> list[LedgerEntry]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        if lines[-1]:
            raise LedgerError(
                f"{self.path} line {len(lines)}: truncated entry (crash mid-write?): "
                f"expected a newline-terminated line, got {len(lines[-1])} bytes without one"
            )
        entries = []
        for number, line in enumerate(lines[:-1], start=1):
            try:
                entries.append(LedgerEntry.from_dict(json.loads(line)))
            except (ValueError, InvalidInput) as exc:
                raise LedgerError(f"{self.path} line {number}: unreadable entry: {exc}") from None
        return entries

    def _check_entry(self, entry: LedgerEntry, line: int) -> None:
        where = f"{self.path} line {line} (seq {entry.seq})"
        computed = entry_hash_of(entry.body())
        if computed != entry.entry_hash:
            raise LedgerError(f"{where}: expected entry_hash {computed}, got {entry.entry_hash}")
        try:
            self._verify_key.verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))
        except InvalidSignature:
            raise LedgerError(
                f"{where}: expected a signature by the ledger key, got one that does not verify"
            ) from None

    def append(self, session_id: str, root: bytes, tree_size: int) -> LedgerEntry:
        """Anchor `root` for a session; the same root again returns the existing entry."""
        if self._signing_key is None:
            raise KeyMaterialError("this ledger was opened without its signing key (ledger.key)")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidInput(f"expected a session id, got {session_id!r}")
        if not isinstance(root, bytes) or not root:
            raise InvalidInput(f"expected root bytes, got {root!r}")
        root_hex = root.hex()
        with self._locked(exclusive=True):
            entries = self._read()
            for entry in entries:
                if entry.session_id != session_id:
                    continue
                if entry.root == root_hex and entry.tree_size == tree_size:
                    return entry
                raise Conflict(
                    f"session {session_id} is already anchored (seq {entry.seq}): expected "
                    f"root {entry.root} size {entry.tree_size}, got {root_hex} size {tree_size}"
                )
            prev_hash = ZERO_HASH
            if entries:
                last = entries[-1]
                if last.seq != len(entries) - 1:
                    raise LedgerError(
                        f"{self.path} line {len(entries)}: expected seq {len(entries) - 1}, "
                        f"got {last.seq}"
                    )
                self._check_entry(last, len(entries))
                prev_hash = last.entry_hash
            body: dict[str, Any] = {
                "seq": len(entries),
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "session_id": session_id,
                "root": root_hex,
                "tree_size": tree_size,
                "prev_hash": prev_hash,
            }
            digest = entry_hash_of(body)
            signature = self._signing_key.sign(bytes.fromhex(digest)).hex()
            entry = LedgerEntry(**body, entry_hash=digest, signature=signature)
            self._write_line(_canonical(entry.to_dict()) + b"\n", created=not entries)
            return entry

    def _write_line(self, line: bytes, *, created: bool) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def entries(self) -> Iterator[LedgerEntry]:
        """Every entry in order, as stored (parsed, not verified)."""
        with self._locked(exclusive=False):
            entries = self._read()
        yield from entries

    def find(self, session_id: str) -> LedgerEntry | None:
        """The entry of a session (hash and signature checked), or None."""
        with self._locked(exclusive=False):
            entries = self._read()
        for line, entry in enumerate(entries, start=1):
            if entry.session_id == session_id:
                self._check_entry(entry, line)
                return entry
        return None

    def verify(self) -> int:
        """Re-check the whole chain; return the number of entries or raise LedgerError."""
        with self._locked(exclusive=False):
            entries = self._read()
        prev_hash, seen = ZERO_HASH, set()
        for line, entry in enumerate(entries, start=1):
            where = f"{self.path} line {line}"
            if entry.seq != line - 1:
                raise LedgerError(f"{where}: expected seq {line - 1}, got {entry.seq}")
            if entry.prev_hash != prev_hash:
                raise LedgerError(f"{where}: expected prev_hash {prev_hash}, got {entry.prev_hash}")
            self._check_entry(entry, line)
            if entry.session_id in seen:
                raise LedgerError(f"{where}: session {entry.session_id} is anchored twice")
            seen.add(entry.session_id)
            prev_hash = entry.entry_hash
        return len(entries)
