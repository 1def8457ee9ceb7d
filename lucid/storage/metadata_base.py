"""What every part of the metadata store shares: its collections, the document type, the
clock and the argument checks (see lucid.storage.metadata)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database

from lucid.errors import InvalidInput, NotFound

Doc = dict[str, Any]
NO_ID = {"_id": False}
SESSION_OWNED = frozenset({"_id", "session_id", "state", "history", "created_at", "updated_at"})
CHUNK_OWNED = frozenset({"_id", "session_id", "index", "stage", "created_at", "updated_at"})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_fields(fields: dict[str, Any] | None, owned: frozenset[str]) -> dict[str, Any]:
    fields = dict(fields or {})
    clash = sorted(owned & fields.keys())
    if clash:
        raise InvalidInput(f"fields {', '.join(clash)} are managed by the metadata store")
    return fields


def check_page(limit: int, skip: int) -> None:
    if limit < 0 or skip < 0:
        raise InvalidInput(f"limit and skip must be >= 0, got {limit} and {skip}")


def check_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput(f"session id must be a non-empty string, got {session_id!r}")
    return session_id


class MetadataCollections:
    """The store's collections, one each for sessions, chunks, anchors and the ledger."""

    def __init__(self, db: Database[Doc]) -> None:
        self.db = db
        # Commit points (state changes, the seal, anchors, the end of an upload) wait for the
        # journal; per-chunk progress does not, since the journal is sequential and the next
        # journaled write makes everything before it durable too.
        journaled = WriteConcern(j=True)
        self.sessions: Collection[Doc] = db.get_collection("sessions", write_concern=journaled)
        self.anchors: Collection[Doc] = db.get_collection("anchors", write_concern=journaled)
        self.chunks: Collection[Doc] = db["chunks"]
        self._sessions_progress: Collection[Doc] = db["sessions"]
        self._chunks_journaled: Collection[Doc] = db.get_collection(
            "chunks", write_concern=journaled
        )
        # The anchor ledger (lucid.integrity.ledger_db): entries and signed checkpoints.
        self.ledger: Collection[Doc] = db.get_collection("ledger", write_concern=journaled)
        self.ledger_checkpoints: Collection[Doc] = db.get_collection(
            "ledger_checkpoints", write_concern=journaled
        )

    def get_session(self, session_id: str) -> Doc:
        """The session document (without Mongo's _id); NotFound if there is none.

        The _id is dropped here, not by a projection: SecantusDB answers any projection by
        deep-copying the document, a quarter of this read's CPU there (0.67 → 0.50 ms for a
        live session's document), and every append and status reads it."""
        doc = self.sessions.find_one({"session_id": check_id(session_id)})
        if doc is None:
            raise NotFound(f"session {session_id} does not exist")
        doc.pop("_id", None)
        return doc
