"""Session, chunk and anchor metadata in a MongoDB-wire database (MongoDB, SecantusDB).

Every state change is a compare-and-set on the state and the length of the history, so
two workers can never both move a session, not even through a self-loop (ERROR → ERROR).
Chunk progress is recorded with `$max`, so a redelivered stage never moves it backwards.
Times are ISO 8601 UTC strings with fixed precision: JSON-ready and sortable as text.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

import pymongo
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from lucid.errors import Conflict, InvalidInput, NotFound
from lucid.lifecycle.states import ChunkStage, SessionState, Transition, Trigger
from lucid.storage.metadata_base import (
    CHUNK_OWNED,
    NO_ID,
    SESSION_OWNED,
    Doc,
    check_fields,
    check_id,
    check_page,
    utc_now,
)
from lucid.storage.metadata_ledger import LedgerRows
from lucid.storage.metadata_listing import ListingQueries
from lucid.storage.metadata_reconcile import ReconcileQueries

__all__ = ["MetadataStore"]

_clients: dict[tuple[str, int, float], pymongo.MongoClient[Doc]] = {}
_clients_lock = threading.Lock()


class MetadataStore(ListingQueries, ReconcileQueries, LedgerRows):
    """Sessions, chunks and anchor receipts, one collection each.

    The listing, reconciler and ledger queries live in sibling modules
    (metadata_listing, metadata_reconcile, metadata_ledger); the collections in
    metadata_base."""

    @classmethod
    def connect(
        cls, url: str, database: str = "lucid", *, timeout_s: float = 10.0
    ) -> MetadataStore:
        """A store on `url`, sharing one client per URL per process (clients aren't fork-safe).

        `timeout_s` bounds finding the server and every socket read: a dead or hung server
        raises a pymongo ConnectionFailure after that long instead of holding the caller.
        """
        key = (url, os.getpid(), timeout_s)
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                timeout_ms = max(1, int(timeout_s * 1000))
                client = pymongo.MongoClient(
                    url,
                    appname="lucid",
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=min(timeout_ms, 5_000),
                    socketTimeoutMS=timeout_ms,
                    tz_aware=True,
                    # Every write here is idempotent or a compare-and-set, and a network
                    # error is already a transient failure (tasks retry, the API answers
                    # 503, clients resume from the committed offset). A driver retry relies
                    # on the server remembering the first attempt: SecantusDB keeps the
                    # last 10,000 writes and scans them on every write (O(n) CPU per write,
                    # then a sort once full), and a retry it has forgotten would re-run a
                    # compare-and-set that already applied and report it lost.
                    retryWrites=False,
                )
                _clients[key] = client
        return cls(client[database])

    def ping(self) -> None:
        """Raise if the server does not answer."""
        self.db.command("ping")

    def ensure_indexes(self) -> None:
        """Create the unique indexes the store relies on (idempotent)."""
        self.sessions.create_index("session_id", unique=True)
        self.sessions.create_index([("created_at", -1)])
        self.sessions.create_index([("updated_at", -1)])  # listing by -updated_at
        self.sessions.create_index([("state", 1), ("created_at", 1)])  # retention
        self.sessions.create_index([("state", 1), ("updated_at", 1)])  # abandoned sessions
        self.sessions.create_index([("state", 1), ("anchor.status", 1)])  # unanchored ones
        self.chunks.create_index([("session_id", 1), ("index", 1)], unique=True)
        # A session's chunks not yet hashed (status counts, the seal's chord): read without
        # the hashed ones, which is all but a few of a long session's records.
        self.chunks.create_index([("session_id", 1), ("stage", 1)])
        self.anchors.create_index("session_id", unique=True)
        # The reconciler's sweeps: chunk work idle since a cutoff, per stage (sessions: above).
        self.chunks.create_index([("stage", 1), ("updated_at", 1)])
        # The ledger's single-writer guarantee: one entry per seq (compare-and-set) and
        # one per session.
        self.ledger.create_index("seq", unique=True)
        self.ledger.create_index("session_id", unique=True)
        self.ledger_checkpoints.create_index("size", unique=True)

    def _update_session(
        self, query: Doc, update: Doc, sessions: Collection[Doc] | None = None
    ) -> Doc | None:
        """The session `query` finds, updated (without Mongo's _id); None if none matched."""
        return (self.sessions if sessions is None else sessions).find_one_and_update(
            query, update, projection=NO_ID, return_document=ReturnDocument.AFTER
        )

    def _update_or_conflict(
        self,
        session_id: str,
        query: Doc,
        update: Doc,
        conflict: str,
        sessions: Collection[Doc] | None = None,
    ) -> Doc:
        """`_update_session`, or Conflict `session ID is STATE{conflict}` when the session
        exists but `query` did not match it (NotFound when it is gone)."""
        doc = self._update_session(query, update, sessions)
        if doc is None:
            actual = self.get_session(session_id)["state"]  # raises NotFound if it is gone
            raise Conflict(f"session {session_id} is {actual}{conflict}")
        return doc

    def _step_session(
        self, session_id: str, seen: Doc, step: Transition, fields: Doc, **guard: Any
    ) -> Doc | None:
        """Apply `step` if the session is still in its from-state with the history `seen`
        had (compare-and-set; `guard` adds conditions); None if it moved meanwhile."""
        return self._update_session(
            {
                "session_id": session_id,
                "state": str(step.from_state),
                "history": {"$size": len(seen["history"])},
                **guard,
            },
            {
                "$set": {**fields, "state": str(step.to_state), "updated_at": utc_now()},
                "$push": {"history": step.to_dict()},
            },
        )

    def create_session(self, session_id: str, fields: dict[str, Any]) -> Doc:
        """Insert a new session in CREATED; Conflict if the id is taken."""
        now = utc_now()
        doc: Doc = {
            "session_id": check_id(session_id),
            "state": str(SessionState.CREATED),
            "created_at": now,
            "updated_at": now,
            "history": [],
            **check_fields(fields, SESSION_OWNED),
        }
        try:
            self.sessions.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"session {session_id} already exists") from None
        doc.pop("_id", None)
        return doc

    def apply_trigger(
        self,
        session_id: str,
        trigger: Trigger,
        *,
        reason: str | None = None,
        set_fields: dict[str, Any] | None = None,
        expect_state: SessionState | None = None,
        by: str | None = None,
    ) -> Doc:
        """Move the session by `trigger` (compare-and-set); Conflict if it moved meanwhile.
        `by` (the acting token's subject) is recorded in the history entry."""
        fields = check_fields(set_fields, SESSION_OWNED)
        seen = self.sessions.find_one(
            {"session_id": check_id(session_id)}, {"state": 1, "history": 1}
        )
        if seen is None:
            raise NotFound(f"session {session_id} does not exist")
        current = SessionState(seen["state"])
        if expect_state is not None and current != expect_state:
            raise Conflict(f"session {session_id} is {current}, expected {expect_state}")
        step = Transition.now(current, trigger, reason, by)
        doc = self._step_session(session_id, seen, step, fields)
        if doc is None:
            raise Conflict(
                f"session {session_id} changed concurrently while applying {trigger} "
                f"from {current}; reload and retry"
            )
        return doc

    def update_session(
        self,
        session_id: str,
        set_fields: dict[str, Any],
        *,
        expect_state: SessionState | None = None,
        journal: bool = True,
    ) -> Doc:
        """Set fields of a session (only while it is in `expect_state`, when given).

        `journal=False` is for progress that a later journaled write will make durable.
        """
        query: Doc = {"session_id": check_id(session_id)}
        if expect_state is not None:
            query["state"] = str(SessionState(expect_state))
        return self._update_or_conflict(
            session_id,
            query,
            {"$set": {**check_fields(set_fields, SESSION_OWNED), "updated_at": utc_now()}},
            f", expected {expect_state}",
            self.sessions if journal else self._sessions_progress,
        )

    def delete_session(self, session_id: str) -> None:
        """Remove the session with its chunk and anchor documents; missing is fine."""
        query = {"session_id": check_id(session_id)}
        # Children first, so a crash midway never leaves chunks without their session.
        self.chunks.delete_many(query)
        self.anchors.delete_many(query)
        self.sessions.delete_many(query)

    def begin_cleanup(
        self,
        session_id: str,
        *,
        reason: str,
        set_fields: dict[str, Any] | None = None,
        by: str | None = None,
    ) -> Doc:
        """Move the session to CLEANUP unless it is on legal hold, in one compare-and-set,
        so a hold set concurrently either wins (Conflict here) or is refused itself.
        Returns the session, which a concurrent cleanup may have taken further."""
        fields = check_fields(set_fields, SESSION_OWNED)
        seen = self.get_session(session_id)
        current = SessionState(seen["state"])
        if seen.get("legal_hold"):
            raise Conflict(f"session {session_id} is on legal hold; clear the hold first")
        if current is SessionState.CLEANUP:
            return seen
        step = Transition.now(current, Trigger.CLEANUP, reason, by)
        doc = self._step_session(session_id, seen, step, fields, legal_hold={"$ne": True})
        if doc is None:
            doc = self.get_session(session_id)
            if doc.get("legal_hold"):
                raise Conflict(f"session {session_id} is on legal hold; clear the hold first")
            if doc["state"] not in (SessionState.CLEANUP, SessionState.DESTROYED):
                raise Conflict(f"session {session_id} changed concurrently; reload and retry")
        return doc  # a concurrent cleanup of the same session is as good as ours

    def record_access(self, session_id: str, action: str, *, by: str) -> None:
        """Append `{action, by, at}` to the session's access log (a download, say).

        Kept apart from `history`, whose length guards every state change: an access
        appended there would make a concurrent state change fail as if it had raced."""
        result = self.sessions.update_one(
            {"session_id": check_id(session_id)},
            {"$push": {"access_log": {"action": action, "by": by, "at": utc_now()}}},
        )
        if result.matched_count == 0:
            raise NotFound(f"session {session_id} does not exist")

    def set_legal_hold(self, session_id: str, hold: bool, *, by: str) -> Doc:
        """Set or clear the legal hold; Conflict once the session is being destroyed."""
        ending = [str(SessionState.CLEANUP), str(SessionState.DESTROYED)]
        return self._update_or_conflict(
            session_id,
            {"session_id": check_id(session_id), "state": {"$nin": ending}},
            {"$set": {"legal_hold": bool(hold), "legal_hold_by": by, "legal_hold_at": utc_now()}},
            ": too late for a legal hold",
        )

    def record_chunk(
        self,
        session_id: str,
        index: int,
        stage: ChunkStage,
        fields: dict[str, Any],
        *,
        journal: bool = False,
    ) -> None:
        """Upsert a chunk's fields and raise its stage to at least `stage` (idempotent).

        `journal=True` waits for the journal (a chunk's leaf, before its plaintext goes).
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidInput(f"chunk index must be an integer >= 0, got {index!r}")
        now = utc_now()
        query = {"session_id": check_id(session_id), "index": index}
        # Leaf records carry their own session id and index: fine if they agree.
        fields = {k: v for k, v in fields.items() if not (k in query and v == query[k])}
        update = {
            "$set": {**check_fields(fields, CHUNK_OWNED), "updated_at": now},
            "$max": {"stage": int(ChunkStage(stage))},
            "$setOnInsert": {"created_at": now},
        }
        chunks = self._chunks_journaled if journal else self.chunks
        try:
            chunks.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            # Two upserts raced to insert; the loser now finds the document and updates it.
            chunks.update_one(query, update, upsert=True)

    def insert_chunk(self, session_id: str, index: int, fields: dict[str, Any]) -> Doc:
        """Insert chunk `index` at stage RECEIVED (journaled); Conflict if it exists already.

        Ingest relies on the unique (session_id, index) index: of two writers committing
        the same chunk, exactly one insert succeeds.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidInput(f"chunk index must be an integer >= 0, got {index!r}")
        now = utc_now()
        doc: Doc = {
            "session_id": check_id(session_id),
            "index": index,
            "stage": int(ChunkStage.RECEIVED),
            "created_at": now,
            "updated_at": now,
            **check_fields(fields, CHUNK_OWNED),
        }
        try:
            self._chunks_journaled.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"session {session_id} already has chunk {index}") from None
        doc.pop("_id", None)
        return doc

    def last_chunk(self, session_id: str, at_least: int = 0) -> Doc | None:
        """The chunk document with the highest index, or None if there is none.

        `at_least`: an index the caller expects a record at (or above). Only the records
        from there on are read then, and all of them only if none is there: SecantusDB
        sorts every candidate, 150 ms for a 5,000-chunk session, read twice per stop.
        """
        query: Doc = {"session_id": check_id(session_id)}
        if at_least > 0:
            doc = self.chunks.find_one(
                {**query, "index": {"$gte": at_least}}, NO_ID, sort=[("index", -1)]
            )
            if doc is not None:
                return doc
        return self.chunks.find_one(query, NO_ID, sort=[("index", -1)])

    def swap_tail(
        self,
        session_id: str,
        seen_seq: int | None,
        tail: dict[str, Any],
        set_fields: dict[str, Any] | None = None,
    ) -> Doc | None:
        """Replace the ingest tail of an ACTIVE, unsealed session if its `seq` is still
        `seen_seq` (None: no tail yet); None when another writer moved it first (journaled).
        """
        query: Doc = {
            "session_id": check_id(session_id),
            "state": str(SessionState.ACTIVE),
            "chunk_count": None,
        }
        if seen_seq is None:
            query["tail"] = None
        else:
            query["tail.seq"] = seen_seq
        fields = check_fields(set_fields, SESSION_OWNED)
        return self._update_session(
            query, {"$set": {**fields, "tail": tail, "updated_at": utc_now()}}
        )

    def get_chunk(self, session_id: str, index: int) -> Doc:
        """One chunk document; NotFound if it was never recorded."""
        doc = self.chunks.find_one({"session_id": check_id(session_id), "index": index}, NO_ID)
        if doc is None:
            raise NotFound(f"session {session_id} has no chunk {index}")
        return doc

    def list_chunks(
        self,
        session_id: str,
        *,
        skip: int = 0,
        limit: int = 0,
        fields: Iterable[str] | None = None,
    ) -> list[Doc]:
        """The session's chunk documents by index (`limit=0`: all); only `fields` if given
        (the seal reads 5,000 leaves: what it does not need is not sent)."""
        check_page(limit, skip)
        projection = NO_ID if fields is None else {**NO_ID, **dict.fromkeys(fields, 1)}
        query = {"session_id": check_id(session_id)}
        cursor = self.chunks.find(query, projection).sort("index", 1)
        return list(cursor.skip(skip).limit(limit))

    def unhashed_indexes(self, session_id: str) -> list[int]:
        """Indexes of the session's chunk records not yet HASHED, in order."""
        query = {"session_id": check_id(session_id), "stage": {"$lt": int(ChunkStage.HASHED)}}
        cursor = self.chunks.find(query, {**NO_ID, "index": 1}).sort("index", 1)
        return [int(doc["index"]) for doc in cursor]

    def record_anchor(self, session_id: str, receipt: dict[str, Any]) -> None:
        """Store (or replace) the session's anchor receipt."""
        query = {"session_id": check_id(session_id)}
        doc = {"session_id": session_id, "receipt": dict(receipt), "updated_at": utc_now()}
        try:
            self.anchors.replace_one(query, doc, upsert=True)
        except DuplicateKeyError:  # a concurrent first upsert won; now replace its document
            self.anchors.replace_one(query, doc, upsert=True)

    def get_anchor(self, session_id: str) -> Doc | None:
        """The receipt last recorded for the session, exactly as given, or None."""
        doc = self.anchors.find_one({"session_id": check_id(session_id)}, NO_ID)
        return None if doc is None else dict(doc["receipt"])

    # Editing and pipeline pause.

    def replace_metadata(self, session_id: str, metadata: dict[str, Any]) -> Doc:
        """Replace the client's metadata; Conflict once the session is being destroyed."""
        ending = [str(SessionState.CLEANUP), str(SessionState.DESTROYED)]
        return self._update_or_conflict(
            session_id,
            {"session_id": check_id(session_id), "state": {"$nin": ending}},
            {"$set": {"metadata": dict(metadata), "updated_at": utc_now()}},
            ": its metadata cannot change",
        )

    def set_pipeline_paused(self, session_id: str, paused: bool, *, by: str) -> Doc:
        """Set or clear the session's pipeline pause (see `lucid.pipeline.hold`)."""
        doc = self._update_session(
            {"session_id": check_id(session_id)},
            {"$set": {"pipeline_paused": bool(paused), "pipeline_paused_by": by,
                      "pipeline_paused_at": utc_now()}},
        )  # fmt: skip
        if doc is None:
            raise NotFound(f"session {session_id} does not exist")
        return doc

    def pipeline_paused(self, session_id: str) -> bool:
        """Whether the session's pipeline is paused (a missing session is not)."""
        doc = self.sessions.find_one(
            {"session_id": check_id(session_id)}, {"_id": 0, "pipeline_paused": 1}
        )
        return bool(doc and doc.get("pipeline_paused"))

    def mark_chunk_held(self, session_id: str, index: int, held: bool) -> None:
        """Mark chunk `index` as held by a paused pipeline, or clear the mark (journaled)."""
        self._chunks_journaled.update_one(
            {"session_id": check_id(session_id), "index": index},
            {"$set": {"held": bool(held), "updated_at": utc_now()}},
        )

    def release_held_chunks(self, session_id: str) -> list[Doc]:
        """Clear the held mark of every held chunk; return those this call released."""
        released = []
        query = {"session_id": check_id(session_id), "held": True}
        for chunk in self.chunks.find(query, NO_ID).sort("index", 1):
            claimed = self._chunks_journaled.update_one(
                {**query, "index": chunk["index"]},
                {"$set": {"held": False, "updated_at": utc_now()}},
            )
            if claimed.modified_count == 1:  # a concurrent resume did not take it first
                released.append(chunk)
        return released
