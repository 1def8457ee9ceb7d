"""The anchor ledger's rows in the metadata store (see lucid.integrity.ledger_db.LedgerRows)."""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo.errors import DuplicateKeyError

from lucid.storage.metadata_base import NO_ID, Doc, MetadataCollections, check_id


class LedgerRows(MetadataCollections):
    """Ledger entries (one per seq and per session) and signed checkpoints."""

    def ledger_insert(self, entry: dict[str, Any]) -> bool:
        """Insert a ledger entry; False if its seq or its session is already taken."""
        try:
            self.ledger.insert_one(dict(entry))
        except DuplicateKeyError:
            return False
        return True

    def ledger_head(self) -> Doc | None:
        """The ledger entry with the highest seq, or None."""
        return self.ledger.find_one({}, NO_ID, sort=[("seq", -1)])

    def ledger_by_session(self, session_id: str) -> Doc | None:
        """The ledger entry of a session, or None."""
        return self.ledger.find_one({"session_id": check_id(session_id)}, NO_ID)

    def ledger_range(self, first: int, last: int | None = None) -> list[Doc]:
        """Ledger entries with first <= seq (<= last), in seq order."""
        bounds: Doc = {"$gte": first} if last is None else {"$gte": first, "$lte": last}
        return list(self.ledger.find({"seq": bounds}, NO_ID).sort("seq", 1))

    def ledger_checkpoint_insert(self, checkpoint: dict[str, Any]) -> None:
        """Store a signed checkpoint; one of the same size already stored wins."""
        with contextlib.suppress(DuplicateKeyError):
            self.ledger_checkpoints.insert_one(dict(checkpoint))

    def ledger_checkpoint_latest(self) -> Doc | None:
        """The stored ledger checkpoint of the largest size, or None."""
        return self.ledger_checkpoints.find_one({}, NO_ID, sort=[("size", -1)])
