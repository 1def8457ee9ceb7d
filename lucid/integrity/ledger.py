"""The anchor ledger: append-only, hash-chained, Ed25519-signed entries.

Two backends share everything that decides trust (`SignedLedger`: entry format, chain
checks, checkpoints, consistency) and differ only in storage:

* `DbLedger` (`lucid.integrity.ledger_db`, LEDGER_BACKEND=db, the default): documents in
  the shared metadata store; every host sees the same ledger, verification opens no
  local file, and one writer per seq is enforced by compare-and-set (a unique index).
* `Ledger` (here, LEDGER_BACKEND=file): a JSON Lines file on one host, for a deployment
  with no shared database to trust, or to keep the ledger off the metadata server. Every
  reader and the anchor worker must share its file system.

The default is the database because the file is state only one host can see: an API or
verifier on another host cannot read it, and two anchor hosts would fork it.

Each file line, and each document, is one entry (keys sorted, no spaces in the file):

    {"entry_hash", "prev_hash", "root", "seq", "session_id", "signature", "time", "tree_size"}

    entry_hash = hex BLAKE3 of the canonical JSON (sorted keys, "," and ":" separators,
                 ASCII) of {seq, time, session_id, root, tree_size, prev_hash}
    prev_hash  = the previous entry's entry_hash, 64 zeros for seq 0
    signature  = hex Ed25519 signature over the 32 raw bytes of entry_hash

File backend: appends from several processes are serialised by flock on a sidecar
`<name>.lock` file; each append writes one whole line and fsyncs it. An append that
fails (a full disk, say) truncates the file back to where it was and raises
AnchorUnavailable, so the anchor task retries it; a crash mid-write can still leave a
partial last line, which readers ignore (no append that wrote it ever returned) and the
next append drops, logging the repair.

A session's entry is trusted only in its place: `find` checks the chain from seq 0 up
to it (seq, prev_hash, entry_hash, signature), so reordered or removed entries are caught.

After each append the anchor side, which alone holds the signing key, writes a signed
checkpoint of the head (`lucid.integrity.checkpoint`): to `<name>.checkpoint.json` for the
file, to the ledger_checkpoints collection for the database. A verifier who
kept an older checkpoint proves the current ledger extends it with `verify_consistency`:
the hash chain itself is the consistency proof (the entries from the old head on must
link forward to the new head). A Merkle tree over the entries (RFC 9162 §2.1.4) would give
logarithmic proofs, but it is a second structure to keep in step with the chain, and a
per-session ledger grows slowly, so the linear suffix is small; the chain was chosen.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lucid.errors import AnchorUnavailable, Conflict, InvalidInput, KeyMaterialError, LedgerError
from lucid.integrity.checkpoint import Checkpoint, sign_checkpoint

__all__ = ["ZERO_HASH", "Ledger", "LedgerEntry", "entry_hash_of", "verify_consistency"]

log = logging.getLogger(__name__)
SigningKey = Ed25519PrivateKey | Callable[[], Ed25519PrivateKey]

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


class SignedLedger:
    """What every ledger backend shares: entry building, the chain checks and the readers.

    A backend supplies `append`, `_all_entries`, `_entries_through`, `_stored_checkpoint`
    and `_snapshot`; everything that decides whether an entry is trusted lives here, once.
    `signing_key` may be a loader, called at the first append: a process that only
    verifies (the API) never reads the key.
    """

    def __init__(self, signing_key: SigningKey | None, verify_key: Ed25519PublicKey) -> None:
        self._signing_key = signing_key
        self.verify_key = verify_key

    def _where(self, position: int) -> str:
        """How an error names the entry at 1-based `position`."""
        return f"ledger position {position}"

    def _signer(self) -> Ed25519PrivateKey:
        if self._signing_key is None:
            raise KeyMaterialError("this ledger was opened without its signing key (ledger.key)")
        if not isinstance(self._signing_key, Ed25519PrivateKey):
            self._signing_key = self._signing_key()
        return self._signing_key

    def _check_entry(self, entry: LedgerEntry, line: int) -> None:
        where = f"{self._where(line)} (seq {entry.seq})"
        computed = entry_hash_of(entry.body())
        if computed != entry.entry_hash:
            raise LedgerError(f"{where}: expected entry_hash {computed}, got {entry.entry_hash}")
        try:
            self.verify_key.verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))
        except InvalidSignature:
            raise LedgerError(
                f"{where}: expected a signature by the ledger key, got one that does not verify"
            ) from None

    def _check_chain(self, entries: list[LedgerEntry], count: int) -> None:
        """Check the first `count` entries: place (seq), link (prev_hash), hash, signature."""
        prev_hash, seen = ZERO_HASH, set()
        for line, entry in enumerate(entries[:count], start=1):
            where = self._where(line)
            if entry.seq != line - 1:
                raise LedgerError(f"{where}: expected seq {line - 1}, got {entry.seq}")
            if entry.prev_hash != prev_hash:
                raise LedgerError(f"{where}: expected prev_hash {prev_hash}, got {entry.prev_hash}")
            self._check_entry(entry, line)
            if entry.session_id in seen:
                raise LedgerError(f"{where}: session {entry.session_id} is anchored twice")
            seen.add(entry.session_id)
            prev_hash = entry.entry_hash

    @staticmethod
    def _check_append(session_id: str, root: bytes) -> str:
        if not isinstance(session_id, str) or not session_id:
            raise InvalidInput(f"expected a session id, got {session_id!r}")
        if not isinstance(root, bytes) or not root:
            raise InvalidInput(f"expected root bytes, got {root!r}")
        return root.hex()

    @staticmethod
    def _same_or_conflict(
        entry: LedgerEntry, session_id: str, root_hex: str, tree_size: int
    ) -> LedgerEntry:
        """The session's existing entry if it anchors the same root, else Conflict."""
        if entry.root == root_hex and entry.tree_size == tree_size:
            return entry
        raise Conflict(
            f"session {session_id} is already anchored (seq {entry.seq}): expected "
            f"root {entry.root} size {entry.tree_size}, got {root_hex} size {tree_size}"
        )

    @staticmethod
    def _new_entry(
        signer: Ed25519PrivateKey,
        seq: int,
        prev_hash: str,
        session_id: str,
        root_hex: str,
        tree_size: int,
    ) -> LedgerEntry:
        body: dict[str, Any] = {
            "seq": seq,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "session_id": session_id,
            "root": root_hex,
            "tree_size": tree_size,
            "prev_hash": prev_hash,
        }
        digest = entry_hash_of(body)
        signature = signer.sign(bytes.fromhex(digest)).hex()
        return LedgerEntry(**body, entry_hash=digest, signature=signature)

    def append(self, session_id: str, root: bytes, tree_size: int) -> LedgerEntry:
        """Anchor `root` for a session; the same root again returns the existing entry."""
        raise NotImplementedError

    def _all_entries(self) -> list[LedgerEntry]:
        raise NotImplementedError

    def _entries_through(self, session_id: str) -> list[LedgerEntry] | None:
        """Entries 0 .. the session's own (as stored), or None if it is not anchored."""
        raise NotImplementedError

    def _stored_checkpoint(self) -> Checkpoint | None:
        raise NotImplementedError

    def _snapshot(self, first: int) -> tuple[Checkpoint | None, list[LedgerEntry]]:
        """The stored checkpoint, then the entries from seq `first` on (at least as many
        as the checkpoint covers, since entries are never removed)."""
        raise NotImplementedError

    def checkpoint(self) -> Checkpoint | None:
        """The latest signed checkpoint written by the anchor side (signature checked)."""
        checkpoint = self._stored_checkpoint()
        if checkpoint is not None:
            checkpoint.verify(self.verify_key)
        return checkpoint

    def consistency(
        self, old_size: int, start: int | None = None
    ) -> tuple[Checkpoint, list[LedgerEntry]]:
        """The latest checkpoint and the entries that prove it extends a head of `old_size`:
        entries `start` .. size - 1, where `start` (default old_size - 1, or 0) may be
        earlier, to tie an older entry (a session's own) to the kept head as well."""
        if isinstance(old_size, bool) or not isinstance(old_size, int) or old_size < 0:
            raise InvalidInput(f"expected a checkpoint size >= 0, got {old_size!r}")
        head_seq = max(old_size - 1, 0)
        first = head_seq if start is None else start
        if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= head_seq:
            raise InvalidInput(f"expected a start entry in 0..{head_seq}, got {start!r}")
        checkpoint, entries = self._snapshot(first)
        if checkpoint is None:
            raise LedgerError("ledger: no checkpoint has been written yet")
        if old_size > checkpoint.size:
            raise LedgerError(
                f"ledger head: expected at least {old_size} entries, got a checkpoint of "
                f"{checkpoint.size}"
            )
        wanted = entries[: checkpoint.size - first]
        if len(wanted) != checkpoint.size - first:
            raise LedgerError(
                f"ledger: expected at least {checkpoint.size} entries (checkpoint), "
                f"got {first + len(wanted)}"
            )
        return checkpoint, wanted

    def entries(self) -> Iterator[LedgerEntry]:
        """Every complete entry in order, as stored (parsed, not verified)."""
        yield from self._all_entries()

    def find(self, session_id: str) -> LedgerEntry | None:
        """The entry of a session, checked in its place: the chain up to it must verify."""
        entries = self._entries_through(session_id)
        if entries is None:
            return None
        self._check_chain(entries, len(entries))
        return entries[-1]

    def verify(self) -> int:
        """Re-check the whole chain; return the number of entries or raise LedgerError."""
        entries = self._all_entries()
        self._check_chain(entries, len(entries))
        return len(entries)


class Ledger(SignedLedger):
    """The ledger as a JSON Lines file at `path` (LEDGER_BACKEND=file): one host only.

    Appends from several processes on that host are serialised by flock on a sidecar
    `<name>.lock` file. Every process that reads it must see the same file system.
    """

    def __init__(
        self, path: Path, signing_key: SigningKey | None, verify_key: Ed25519PublicKey
    ) -> None:
        super().__init__(signing_key, verify_key)
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.checkpoint_path = self.path.with_name(self.path.name + ".checkpoint.json")

    def _where(self, position: int) -> str:
        return f"{self.path} line {position}"

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    def _read(self) -> tuple[list[LedgerEntry], int]:
        """The complete entries and the length of a torn last line (0 if none)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        lines = data.split(b"\n")
        torn = len(lines[-1])
        entries = []
        for number, line in enumerate(lines[:-1], start=1):
            try:
                entries.append(LedgerEntry.from_dict(json.loads(line)))
            except (ValueError, InvalidInput) as exc:
                raise LedgerError(f"{self.path} line {number}: unreadable entry: {exc}") from None
        return entries, torn

    def _all_entries(self) -> list[LedgerEntry]:
        with self._locked(exclusive=False):
            return self._read()[0]

    def _entries_through(self, session_id: str) -> list[LedgerEntry] | None:
        entries = self._all_entries()
        for line, entry in enumerate(entries, start=1):
            if entry.session_id == session_id:
                return entries[:line]
        return None

    def _stored_checkpoint(self) -> Checkpoint | None:
        with self._locked(exclusive=False):
            return self._load_checkpoint()

    def _snapshot(self, first: int) -> tuple[Checkpoint | None, list[LedgerEntry]]:
        with self._locked(exclusive=False):
            checkpoint = self._load_checkpoint()
            entries, _ = self._read()
        return checkpoint, entries[first:]

    def append(self, session_id: str, root: bytes, tree_size: int) -> LedgerEntry:
        """Anchor `root` for a session; the same root again returns the existing entry."""
        root_hex = self._check_append(session_id, root)
        signer = self._signer()
        with self._locked(exclusive=True):
            entries, torn = self._read()
            if torn:
                self._drop_torn_tail(torn)
            for entry in entries:
                if entry.session_id == session_id:
                    found = self._same_or_conflict(entry, session_id, root_hex, tree_size)
                    self._publish_checkpoint(signer, entries)
                    return found
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
            entry = self._new_entry(
                signer, len(entries), prev_hash, session_id, root_hex, tree_size
            )
            self._write_line(_canonical(entry.to_dict()) + b"\n", created=not entries)
            self._publish_checkpoint(signer, [*entries, entry])
            return entry

    def _drop_torn_tail(self, torn: int) -> None:
        size = self.path.stat().st_size
        with open(self.path, "r+b") as handle:
            handle.truncate(size - torn)
            os.fsync(handle.fileno())
        log.warning(
            "event=ledger_repaired path=%s dropped_bytes=%d reason=torn_last_line", self.path, torn
        )

    def _write_line(self, line: bytes, *, created: bool) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        start = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            # Leave the ledger as it was, so earlier entries keep verifying; the anchor
            # task retries a transient error once there is room again.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
                os.fsync(fd)
            raise AnchorUnavailable(
                f"{self.path}: append failed ({exc.strerror}); the ledger is left as it was"
            ) from None
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)

    def _publish_checkpoint(self, signer: Ed25519PrivateKey, entries: list[LedgerEntry]) -> None:
        """Write a signed checkpoint of the head (atomically); a failure only logs."""
        try:
            current = self._load_checkpoint()
        except LedgerError:  # unreadable: the signer writes a fresh one
            current = None
        if current is not None and current.size == len(entries):
            return
        head = entries[-1].entry_hash if entries else ZERO_HASH
        data = _canonical(sign_checkpoint(signer, len(entries), head).to_dict()) + b"\n"
        tmp = self.checkpoint_path.with_name(f".{self.checkpoint_path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.checkpoint_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("event=checkpoint_failed path=%s reason=%r", self.checkpoint_path, exc)

    def _load_checkpoint(self) -> Checkpoint | None:
        try:
            raw = self.checkpoint_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Checkpoint.from_dict(json.loads(raw))
        except (ValueError, InvalidInput) as exc:
            raise LedgerError(f"{self.checkpoint_path}: unreadable checkpoint: {exc}") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_consistency(old: Checkpoint, new: Checkpoint, entries: list[LedgerEntry]) -> None:
    """Prove that the ledger of checkpoint `new` extends the one of checkpoint `old`.

    `entries` run from some seq at or before old.size - 1 up to new.size - 1 (from seq 0
    when old.size is 0), as `Ledger.consistency` returns them. Steps:

    1. `old` verifies under its own key and `new` under the same key;
    2. new.size >= old.size;
    3. the entries have consecutive seqs, starting at or before old.size - 1 and ending
       at new.size - 1;
    4. each entry's entry_hash and signature verify, and each links to the one before
       it by prev_hash (seq 0 to 64 zeros);
    5. entry old.size - 1 has the entry_hash `old.head` (nothing up to the kept head was
       rewritten: its hash chains over every earlier entry);
    6. the last entry's entry_hash is `new.head`.

    Returns None or raises LedgerError.
    """
    old.verify()
    new.verify(old.public_key())
    if new.size < old.size:
        raise LedgerError(f"ledger size: expected at least {old.size}, got {new.size}")
    head_seq = max(old.size - 1, 0)
    first = entries[0].seq if entries else head_seq
    want = list(range(min(first, head_seq), new.size))
    got = [entry.seq for entry in entries]
    if got != want or (old.size == 0 and first != 0):
        raise LedgerError(f"consistency entries: expected seq {want[:1]}..{want[-1:]}, got {got}")
    prev_hash: str | None = ZERO_HASH if first == 0 else None
    for entry in entries:
        if prev_hash is not None and entry.prev_hash != prev_hash:
            raise LedgerError(
                f"entry seq {entry.seq}: expected prev_hash {prev_hash}, got {entry.prev_hash}"
            )
        computed = entry_hash_of(entry.body())
        if computed != entry.entry_hash:
            raise LedgerError(
                f"entry seq {entry.seq}: expected entry_hash {computed}, got {entry.entry_hash}"
            )
        try:
            old.public_key().verify(bytes.fromhex(entry.signature), bytes.fromhex(entry.entry_hash))
        except InvalidSignature:
            raise LedgerError(
                f"entry seq {entry.seq}: expected a signature by the ledger key, got one that "
                "does not verify"
            ) from None
        if old.size and entry.seq == old.size - 1 and entry.entry_hash != old.head:
            raise LedgerError(
                f"ledger rewritten: entry seq {entry.seq}: expected entry_hash {old.head} "
                f"(kept checkpoint of size {old.size}), got {entry.entry_hash}"
            )
        prev_hash = entry.entry_hash
    head = entries[-1].entry_hash if entries else ZERO_HASH
    if head != new.head:
        raise LedgerError(f"ledger head: expected {new.head} (checkpoint), got {head}")
