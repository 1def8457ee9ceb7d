"""The anchor ledger in the shared metadata database (LEDGER_BACKEND=db, the default).

Same entries, hash chain, signatures and checkpoints as the file ledger
(`lucid.integrity.ledger`), stored as one document per entry in a collection with unique
indexes on `seq` and on `session_id`, so every host sees the same ledger and no verifier
opens a local file.

Single writer: **compare-and-set on the sequence number.** An append reads the head
(seq N, entry_hash H), signs entry N + 1 chained to H and inserts it; the unique index on
`seq` lets exactly one of two racing writers insert N + 1. The loser gets a duplicate,
reads the new head and tries again (or finds its session already anchored by the
winner). The one-worker anchor queue makes races rare, but correctness does not rely on
it: two anchor workers on two hosts still form one chain.

Checkpoints go to their own collection, keyed by size; the latest is the largest. A
writer that died between inserting its entry and its checkpoint is repaired by the next
append (or a repeated one for the same session), which checkpoints the head it sees.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lucid.errors import AnchorUnavailable, InvalidInput, LedgerError
from lucid.integrity.checkpoint import Checkpoint, sign_checkpoint
from lucid.integrity.ledger import ZERO_HASH, LedgerEntry, SignedLedger, SigningKey

__all__ = ["DbLedger", "LedgerRows"]

log = logging.getLogger(__name__)
_ATTEMPTS = 64


class LedgerRows(Protocol):
    """The storage a `DbLedger` needs (implemented by `MetadataStore`)."""

    def ledger_insert(self, entry: dict[str, Any]) -> bool:
        """Insert an entry; False if its seq or session_id is taken."""
        ...

    def ledger_head(self) -> dict[str, Any] | None:
        """The entry with the highest seq."""
        ...

    def ledger_by_session(self, session_id: str) -> dict[str, Any] | None:
        """The entry of a session."""
        ...

    def ledger_range(self, first: int, last: int | None = None) -> list[dict[str, Any]]:
        """Entries with first <= seq (<= last), in seq order."""
        ...

    def ledger_checkpoint_insert(self, checkpoint: dict[str, Any]) -> None:
        """Store a checkpoint (one per size; a second of the same size is ignored)."""
        ...

    def ledger_checkpoint_latest(self) -> dict[str, Any] | None:
        """The stored checkpoint of the largest size."""
        ...


def _parse(doc: dict[str, Any], what: str) -> LedgerEntry:
    try:
        return LedgerEntry.from_dict(doc)
    except InvalidInput as exc:
        raise LedgerError(f"ledger {what}: unreadable entry: {exc}") from None


class DbLedger(SignedLedger):
    """The signed ledger as documents in the metadata store."""

    def __init__(
        self, rows: LedgerRows, signing_key: SigningKey | None, verify_key: Ed25519PublicKey
    ) -> None:
        super().__init__(signing_key, verify_key)
        self.rows = rows

    def _where(self, position: int) -> str:
        return f"ledger entry {position} of the collection"

    def append(self, session_id: str, root: bytes, tree_size: int) -> LedgerEntry:
        """Anchor `root` for a session; the same root again returns the existing entry."""
        root_hex = self._check_append(session_id, root)
        signer = self._signer()
        for _ in range(_ATTEMPTS):
            existing = self.rows.ledger_by_session(session_id)
            if existing is not None:
                found = _parse(existing, f"session {session_id}")
                found = self._same_or_conflict(found, session_id, root_hex, tree_size)
                self._publish_checkpoint(signer)
                return found
            head_doc = self.rows.ledger_head()
            seq, prev_hash = 0, ZERO_HASH
            if head_doc is not None:
                head = _parse(head_doc, "head")
                self._check_entry(head, head.seq + 1)  # never chain onto a forged head
                seq, prev_hash = head.seq + 1, head.entry_hash
            entry = self._new_entry(signer, seq, prev_hash, session_id, root_hex, tree_size)
            if self.rows.ledger_insert(entry.to_dict()):
                self._publish_checkpoint(signer, entry)
                return entry
            log.info("event=ledger_append_retry session_id=%s seq=%d reason=taken", session_id, seq)
        raise AnchorUnavailable(
            f"ledger append for session {session_id}: expected a free seq within "
            f"{_ATTEMPTS} attempts, got a head that kept moving"
        )

    def _publish_checkpoint(self, signer: Any, entry: LedgerEntry | None = None) -> None:
        """Checkpoint `entry` (else the current head) unless a checkpoint covers it."""
        if entry is None:
            head_doc = self.rows.ledger_head()
            if head_doc is None:
                return
            entry = _parse(head_doc, "head")
        current = self.rows.ledger_checkpoint_latest()
        if current is not None and int(current.get("size", -1)) >= entry.seq + 1:
            return
        checkpoint = sign_checkpoint(signer, entry.seq + 1, entry.entry_hash)
        self.rows.ledger_checkpoint_insert(checkpoint.to_dict())

    def _all_entries(self) -> list[LedgerEntry]:
        return [_parse(doc, f"seq {doc.get('seq')}") for doc in self.rows.ledger_range(0)]

    def _entries_through(self, session_id: str) -> list[LedgerEntry] | None:
        own = self.rows.ledger_by_session(session_id)
        if own is None:
            return None
        entry = _parse(own, f"session {session_id}")
        docs = self.rows.ledger_range(0, entry.seq)
        entries = [_parse(doc, f"seq {doc.get('seq')}") for doc in docs]
        if not entries or entries[-1] != entry:
            raise LedgerError(
                f"ledger: expected session {session_id}'s entry at seq {entry.seq} to end the "
                f"chain up to it, got {len(entries)} entries ending elsewhere"
            )
        return entries

    def _stored_checkpoint(self) -> Checkpoint | None:
        doc = self.rows.ledger_checkpoint_latest()
        if doc is None:
            return None
        try:
            return Checkpoint.from_dict(doc)
        except InvalidInput as exc:
            raise LedgerError(f"ledger checkpoint: unreadable: {exc}") from None

    def _snapshot(self, first: int) -> tuple[Checkpoint | None, list[LedgerEntry]]:
        # The checkpoint first: entries are only ever added, so those read after it
        # include every entry it covers.
        checkpoint = self._stored_checkpoint()
        docs = self.rows.ledger_range(first)
        return checkpoint, [_parse(doc, f"seq {doc.get('seq')}") for doc in docs]
