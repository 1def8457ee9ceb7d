"""Session, chunk and anchor metadata in a MongoDB-wire database (MongoDB, SecantusDB).

Every state change is a compare-and-set on the state and the length of the history, so
two workers can never both move a session, not even through a self-loop (ERROR → ERROR).
Chunk progress is recorded with `$max`, so a redelivered stage never moves it backwards.
Times are ISO 8601 UTC strings with fixed precision: JSON-ready and sortable as text.
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo import ReturnDocument, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from lucid.crypto.tokens import DEFAULT_TENANT
from lucid.errors import Conflict, InvalidInput, NotFound
from lucid.lifecycle.states import ChunkStage, SessionState, Transition, Trigger

__all__ = ["MetadataStore"]

Doc = dict[str, Any]
_NO_ID = {"_id": False}
_SESSION_OWNED = frozenset({"_id", "session_id", "state", "history", "created_at", "updated_at"})
_CHUNK_OWNED = frozenset({"_id", "session_id", "index", "stage", "created_at", "updated_at"})
_clients: dict[tuple[str, int, float], pymongo.MongoClient[Doc]] = {}
_clients_lock = threading.Lock()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _check_fields(fields: dict[str, Any] | None, owned: frozenset[str]) -> dict[str, Any]:
    fields = dict(fields or {})
    clash = sorted(owned & fields.keys())
    if clash:
        raise InvalidInput(f"fields {', '.join(clash)} are managed by the metadata store")
    return fields


def _check_page(limit: int, skip: int) -> None:
    if limit < 0 or skip < 0:
        raise InvalidInput(f"limit and skip must be >= 0, got {limit} and {skip}")


def _check_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput(f"session id must be a non-empty string, got {session_id!r}")
    return session_id


class MetadataStore:
    """Sessions, chunks and anchor receipts, one collection each."""

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
        self.sessions.create_index([("state", 1), ("created_at", 1)])  # retention
        self.sessions.create_index([("state", 1), ("updated_at", 1)])  # abandoned sessions
        self.chunks.create_index([("session_id", 1), ("index", 1)], unique=True)
        self.anchors.create_index("session_id", unique=True)
        # The reconciler's sweeps: work idle since a cutoff, per chunk stage / session state.
        self.chunks.create_index([("stage", 1), ("updated_at", 1)])
        self.sessions.create_index([("state", 1), ("updated_at", 1)])
        # The ledger's single-writer guarantee: one entry per seq (compare-and-set) and
        # one per session.
        self.ledger.create_index("seq", unique=True)
        self.ledger.create_index("session_id", unique=True)
        self.ledger_checkpoints.create_index("size", unique=True)

    def create_session(self, session_id: str, fields: dict[str, Any]) -> Doc:
        """Insert a new session in CREATED; Conflict if the id is taken."""
        now = _now()
        doc: Doc = {
            "session_id": _check_id(session_id),
            "state": str(SessionState.CREATED),
            "created_at": now,
            "updated_at": now,
            "history": [],
            **_check_fields(fields, _SESSION_OWNED),
        }
        try:
            self.sessions.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"session {session_id} already exists") from None
        doc.pop("_id", None)
        return doc

    def get_session(self, session_id: str) -> Doc:
        """The session document (without Mongo's _id); NotFound if there is none."""
        doc = self.sessions.find_one({"session_id": _check_id(session_id)}, _NO_ID)
        if doc is None:
            raise NotFound(f"session {session_id} does not exist")
        return doc

    def list_sessions(
        self, limit: int = 50, skip: int = 0, state: str | None = None, tenant: str | None = None
    ) -> list[Doc]:
        """Sessions newest first, optionally only those in `state` and of `tenant` (sessions
        without one belong to DEFAULT_TENANT)."""
        _check_page(limit, skip)
        query: Doc = {}
        if tenant is not None:
            query["tenant"] = {"$in": [tenant, None]} if tenant == DEFAULT_TENANT else tenant
        if state is not None:
            try:
                query["state"] = str(SessionState(state))
            except ValueError:
                allowed = ", ".join(SessionState)
                raise InvalidInput(f"unknown state {state!r}; allowed: {allowed}") from None
        cursor = self.sessions.find(query, _NO_ID).sort([("created_at", -1), ("_id", -1)])
        return list(cursor.skip(skip).limit(limit))

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
        fields = _check_fields(set_fields, _SESSION_OWNED)
        seen = self.sessions.find_one(
            {"session_id": _check_id(session_id)}, {"state": 1, "history": 1}
        )
        if seen is None:
            raise NotFound(f"session {session_id} does not exist")
        current = SessionState(seen["state"])
        if expect_state is not None and current != expect_state:
            raise Conflict(f"session {session_id} is {current}, expected {expect_state}")
        step = Transition.now(current, trigger, reason, by)
        doc = self.sessions.find_one_and_update(
            {
                "session_id": session_id,
                "state": str(current),
                "history": {"$size": len(seen["history"])},
            },
            {
                "$set": {**fields, "state": str(step.to_state), "updated_at": _now()},
                "$push": {"history": step.to_dict()},
            },
            projection=_NO_ID,
            return_document=ReturnDocument.AFTER,
        )
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
        query: Doc = {"session_id": _check_id(session_id)}
        if expect_state is not None:
            query["state"] = str(SessionState(expect_state))
        sessions = self.sessions if journal else self._sessions_progress
        doc = sessions.find_one_and_update(
            query,
            {"$set": {**_check_fields(set_fields, _SESSION_OWNED), "updated_at": _now()}},
            projection=_NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            actual = self.get_session(session_id)["state"]  # raises NotFound if it is gone
            raise Conflict(f"session {session_id} is {actual}, expected {expect_state}")
        return doc

    def delete_session(self, session_id: str) -> None:
        """Remove the session with its chunk and anchor documents; missing is fine."""
        query = {"session_id": _check_id(session_id)}
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
        fields = _check_fields(set_fields, _SESSION_OWNED)
        seen = self.get_session(session_id)
        current = SessionState(seen["state"])
        if seen.get("legal_hold"):
            raise Conflict(f"session {session_id} is on legal hold; clear the hold first")
        if current is SessionState.CLEANUP:
            return seen
        step = Transition.now(current, Trigger.CLEANUP, reason, by)
        doc = self.sessions.find_one_and_update(
            {
                "session_id": session_id,
                "state": str(current),
                "history": {"$size": len(seen["history"])},
                "legal_hold": {"$ne": True},
            },
            {
                "$set": {**fields, "state": str(step.to_state), "updated_at": _now()},
                "$push": {"history": step.to_dict()},
            },
            projection=_NO_ID,
            return_document=ReturnDocument.AFTER,
        )
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
            {"session_id": _check_id(session_id)},
            {"$push": {"access_log": {"action": action, "by": by, "at": _now()}}},
        )
        if result.matched_count == 0:
            raise NotFound(f"session {session_id} does not exist")

    def set_legal_hold(self, session_id: str, hold: bool, *, by: str) -> Doc:
        """Set or clear the legal hold; Conflict once the session is being destroyed."""
        ending = [str(SessionState.CLEANUP), str(SessionState.DESTROYED)]
        doc = self.sessions.find_one_and_update(
            {"session_id": _check_id(session_id), "state": {"$nin": ending}},
            {"$set": {"legal_hold": bool(hold), "legal_hold_by": by, "legal_hold_at": _now()}},
            projection=_NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            actual = self.get_session(session_id)["state"]  # raises NotFound if it is gone
            raise Conflict(f"session {session_id} is {actual}: too late for a legal hold")
        return doc

    def find_sessions(
        self,
        states: list[SessionState],
        *,
        created_before: str | None = None,
        updated_before: str | None = None,
        tenant_in: list[str | None] | None = None,
        tenant_not_in: list[str | None] | None = None,
        exclude_held: bool = False,
        limit: int = 0,
    ) -> list[Doc]:
        """Sessions in `states` matching the filters, oldest first (`None` in a tenant list
        matches sessions without a tenant); only their ids, tenant, state and times."""
        _check_page(limit, 0)
        query: Doc = {"state": {"$in": [str(SessionState(s)) for s in states]}}
        if created_before is not None:
            query["created_at"] = {"$lt": created_before}
        if updated_before is not None:
            query["updated_at"] = {"$lt": updated_before}
        if tenant_in is not None:
            query["tenant"] = {"$in": tenant_in}
        if tenant_not_in is not None:
            query.setdefault("tenant", {})["$nin"] = tenant_not_in
        if exclude_held:
            query["legal_hold"] = {"$ne": True}
        fields = {"session_id", "tenant", "state", "created_at", "updated_at", "legal_hold"}
        cursor = self.sessions.find(query, {**_NO_ID, **dict.fromkeys(fields, True)})
        sort = "updated_at" if updated_before is not None else "created_at"
        return list(cursor.sort([(sort, 1), ("_id", 1)]).limit(limit))

    def count_sessions(self, states: list[SessionState], tenant: str | None = None) -> int:
        """How many sessions are in `states` (of one tenant, when given)."""
        query: Doc = {"state": {"$in": [str(SessionState(s)) for s in states]}}
        if tenant is not None:
            query["tenant"] = tenant
        return int(self.sessions.count_documents(query))

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
        now = _now()
        query = {"session_id": _check_id(session_id), "index": index}
        # Leaf records carry their own session id and index: fine if they agree.
        fields = {k: v for k, v in fields.items() if not (k in query and v == query[k])}
        update = {
            "$set": {**_check_fields(fields, _CHUNK_OWNED), "updated_at": now},
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
        now = _now()
        doc: Doc = {
            "session_id": _check_id(session_id),
            "index": index,
            "stage": int(ChunkStage.RECEIVED),
            "created_at": now,
            "updated_at": now,
            **_check_fields(fields, _CHUNK_OWNED),
        }
        try:
            self._chunks_journaled.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"session {session_id} already has chunk {index}") from None
        doc.pop("_id", None)
        return doc

    def last_chunk(self, session_id: str) -> Doc | None:
        """The chunk document with the highest index, or None if there is none."""
        return self.chunks.find_one(
            {"session_id": _check_id(session_id)}, _NO_ID, sort=[("index", -1)]
        )

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
            "session_id": _check_id(session_id),
            "state": str(SessionState.ACTIVE),
            "chunk_count": None,
        }
        if seen_seq is None:
            query["tail"] = None
        else:
            query["tail.seq"] = seen_seq
        fields = _check_fields(set_fields, _SESSION_OWNED)
        return self.sessions.find_one_and_update(
            query,
            {"$set": {**fields, "tail": tail, "updated_at": _now()}},
            projection=_NO_ID,
            return_document=ReturnDocument.AFTER,
        )

    def get_chunk(self, session_id: str, index: int) -> Doc:
        """One chunk document; NotFound if it was never recorded."""
        doc = self.chunks.find_one({"session_id": _check_id(session_id), "index": index}, _NO_ID)
        if doc is None:
            raise NotFound(f"session {session_id} has no chunk {index}")
        return doc

    def list_chunks(self, session_id: str, *, skip: int = 0, limit: int = 0) -> list[Doc]:
        """The session's chunk documents by index (`limit=0`: all)."""
        _check_page(limit, skip)
        cursor = self.chunks.find({"session_id": _check_id(session_id)}, _NO_ID).sort("index", 1)
        return list(cursor.skip(skip).limit(limit))

    def stage_counts(self, session_id: str) -> dict[str, int]:
        """How many chunks have reached each stage (a hashed chunk counts in all four)."""
        names = {stage.name.lower(): int(stage) for stage in ChunkStage}
        group: Doc = {"_id": None}
        for name, stage in names.items():
            group[name] = {"$sum": {"$cond": [{"$gte": ["$stage", stage]}, 1, 0]}}
        match = {"$match": {"session_id": _check_id(session_id)}}
        row = next(self.chunks.aggregate([match, {"$group": group}]), {})
        return {name: int(row.get(name, 0)) for name in names}

    def record_anchor(self, session_id: str, receipt: dict[str, Any]) -> None:
        """Store (or replace) the session's anchor receipt."""
        query = {"session_id": _check_id(session_id)}
        doc = {"session_id": session_id, "receipt": dict(receipt), "updated_at": _now()}
        try:
            self.anchors.replace_one(query, doc, upsert=True)
        except DuplicateKeyError:  # a concurrent first upsert won; now replace its document
            self.anchors.replace_one(query, doc, upsert=True)

    def get_anchor(self, session_id: str) -> Doc | None:
        """The receipt last recorded for the session, exactly as given, or None."""
        doc = self.anchors.find_one({"session_id": _check_id(session_id)}, _NO_ID)
        return None if doc is None else dict(doc["receipt"])

    # The reconciler's queries. `reconciled_at` is its own stamp: it never touches
    # `updated_at`, which keeps meaning "last progress".

    def idle_chunks(self, before: str, *, limit: int) -> list[Doc]:
        """Chunks below HASHED unchanged and not reconciled since `before`, oldest first."""
        query = {
            "stage": {"$lt": int(ChunkStage.HASHED)},
            "updated_at": {"$lt": before},
            "reconciled_at": {"$not": {"$gte": before}},
        }
        return list(self.chunks.find(query, _NO_ID).sort("updated_at", 1).limit(limit))

    def unsealed_sessions(self, before: str, *, limit: int) -> list[Doc]:
        """Sessions STOPPING without a root, unchanged and not reconciled since `before`."""
        return self._idle_sessions(
            {"state": str(SessionState.STOPPING), "merkle_root": None}, before, limit
        )

    def unanchored_sessions(self, before: str, *, limit: int) -> list[Doc]:
        """Sessions STOPPED with a root but no confirmed anchor receipt, unchanged and not
        reconciled since `before`."""
        query = {
            "state": str(SessionState.STOPPED),
            "merkle_root": {"$ne": None},
            "anchor.status": {"$ne": "confirmed"},
        }
        return self._idle_sessions(query, before, limit)

    def _idle_sessions(self, query: Doc, before: str, limit: int) -> list[Doc]:
        query = {
            **query,
            "updated_at": {"$lt": before},
            "reconciled_at": {"$not": {"$gte": before}},
        }
        return list(self.sessions.find(query, _NO_ID).sort("updated_at", 1).limit(limit))

    def session_states(self, session_ids: list[str]) -> dict[str, SessionState]:
        """The state of each of `session_ids` that exists."""
        docs = self.sessions.find(
            {"session_id": {"$in": session_ids}}, {"session_id": 1, "state": 1}
        )
        return {d["session_id"]: SessionState(d["state"]) for d in docs}

    def chunks_changed_since(self, session_id: str, since: str) -> bool:
        """Whether any chunk of the session was recorded at or after `since`."""
        query = {"session_id": _check_id(session_id), "updated_at": {"$gte": since}}
        return self.chunks.find_one(query, {"_id": 1}) is not None

    def claim_chunk(self, session_id: str, index: int, before: str, now: str) -> bool:
        """Stamp the chunk reconciled at `now` unless a sweep did since `before` (one wins)."""
        query = {
            "session_id": _check_id(session_id),
            "index": index,
            "reconciled_at": {"$not": {"$gte": before}},
        }
        return self.chunks.update_one(query, {"$set": {"reconciled_at": now}}).modified_count == 1

    def claim_session(self, session_id: str, state: SessionState, before: str, now: str) -> bool:
        """Stamp the session reconciled at `now` if it is still in `state` and no sweep did
        since `before` (one wins)."""
        query = {
            "session_id": _check_id(session_id),
            "state": str(SessionState(state)),
            "reconciled_at": {"$not": {"$gte": before}},
        }
        update = {"$set": {"reconciled_at": now}}
        return self._sessions_progress.update_one(query, update).modified_count == 1

    # The anchor ledger's rows (see lucid.integrity.ledger_db.LedgerRows).

    def ledger_insert(self, entry: dict[str, Any]) -> bool:
        """Insert a ledger entry; False if its seq or its session is already taken."""
        try:
            self.ledger.insert_one(dict(entry))
        except DuplicateKeyError:
            return False
        return True

    def ledger_head(self) -> Doc | None:
        """The ledger entry with the highest seq, or None."""
        return self.ledger.find_one({}, _NO_ID, sort=[("seq", -1)])

    def ledger_by_session(self, session_id: str) -> Doc | None:
        """The ledger entry of a session, or None."""
        return self.ledger.find_one({"session_id": _check_id(session_id)}, _NO_ID)

    def ledger_range(self, first: int, last: int | None = None) -> list[Doc]:
        """Ledger entries with first <= seq (<= last), in seq order."""
        bounds: Doc = {"$gte": first} if last is None else {"$gte": first, "$lte": last}
        return list(self.ledger.find({"seq": bounds}, _NO_ID).sort("seq", 1))

    def ledger_checkpoint_insert(self, checkpoint: dict[str, Any]) -> None:
        """Store a signed checkpoint; one of the same size already stored wins."""
        with contextlib.suppress(DuplicateKeyError):
            self.ledger_checkpoints.insert_one(dict(checkpoint))

    def ledger_checkpoint_latest(self) -> Doc | None:
        """The stored ledger checkpoint of the largest size, or None."""
        return self.ledger_checkpoints.find_one({}, _NO_ID, sort=[("size", -1)])

    # Editing, pipeline pause, listing and statistics.

    def replace_metadata(self, session_id: str, metadata: dict[str, Any]) -> Doc:
        """Replace the client's metadata; Conflict once the session is being destroyed."""
        ending = [str(SessionState.CLEANUP), str(SessionState.DESTROYED)]
        doc = self.sessions.find_one_and_update(
            {"session_id": _check_id(session_id), "state": {"$nin": ending}},
            {"$set": {"metadata": dict(metadata), "updated_at": _now()}},
            projection=_NO_ID,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            actual = self.get_session(session_id)["state"]  # raises NotFound if it is gone
            raise Conflict(f"session {session_id} is {actual}: its metadata cannot change")
        return doc

    def set_pipeline_paused(self, session_id: str, paused: bool, *, by: str) -> Doc:
        """Set or clear the session's pipeline pause (see `lucid.pipeline.hold`)."""
        doc = self.sessions.find_one_and_update(
            {"session_id": _check_id(session_id)},
            {"$set": {"pipeline_paused": bool(paused), "pipeline_paused_by": by,
                      "pipeline_paused_at": _now()}},
            projection=_NO_ID,
            return_document=ReturnDocument.AFTER,
        )  # fmt: skip
        if doc is None:
            raise NotFound(f"session {session_id} does not exist")
        return doc

    def pipeline_paused(self, session_id: str) -> bool:
        """Whether the session's pipeline is paused (a missing session is not)."""
        doc = self.sessions.find_one(
            {"session_id": _check_id(session_id)}, {"_id": 0, "pipeline_paused": 1}
        )
        return bool(doc and doc.get("pipeline_paused"))

    def mark_chunk_held(self, session_id: str, index: int, held: bool) -> None:
        """Mark chunk `index` as held by a paused pipeline, or clear the mark (journaled)."""
        self._chunks_journaled.update_one(
            {"session_id": _check_id(session_id), "index": index},
            {"$set": {"held": bool(held), "updated_at": _now()}},
        )

    def release_held_chunks(self, session_id: str) -> list[Doc]:
        """Clear the held mark of every held chunk; return those this call released."""
        released = []
        query = {"session_id": _check_id(session_id), "held": True}
        for chunk in self.chunks.find(query, _NO_ID).sort("index", 1):
            claimed = self._chunks_journaled.update_one(
                {**query, "index": chunk["index"]},
                {"$set": {"held": False, "updated_at": _now()}},
            )
            if claimed.modified_count == 1:  # a concurrent resume did not take it first
                released.append(chunk)
        return released

    def chunk_totals(self, session_id: str) -> dict[str, int]:
        """The session's chunk counts and byte totals: held chunks, and the plaintext,
        compressed and ciphertext bytes of the chunks that reached each stage."""
        group: Doc = {
            "_id": None,
            "chunks": {"$sum": 1},
            "held": {"$sum": {"$cond": [{"$eq": ["$held", True]}, 1, 0]}},
            "plaintext_bytes": {"$sum": {"$ifNull": ["$plaintext_len", 0]}},
            "compressed_bytes": {"$sum": {"$ifNull": ["$compressed_len", 0]}},
            "ciphertext_bytes": {"$sum": {"$ifNull": ["$ciphertext_len", 0]}},
        }
        match = {"$match": {"session_id": _check_id(session_id)}}
        row = next(self.chunks.aggregate([match, {"$group": group}]), {})
        return {name: int(row.get(name, 0)) for name in group if name != "_id"}

    def sessions_by_state(self) -> dict[str, int]:
        """How many sessions are in each state (every state listed, zeros included)."""
        counts = dict.fromkeys((str(s) for s in SessionState), 0)
        for row in self.sessions.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}]):
            counts[str(row["_id"])] = int(row["n"])
        return counts

    def stored_totals(self) -> dict[str, int]:
        """Hashed (stored) chunks in the whole deployment and their ciphertext bytes."""
        match = {"$match": {"stage": {"$gte": int(ChunkStage.HASHED)}}}
        group = {"$group": {"_id": None, "chunks": {"$sum": 1},
                            "bytes": {"$sum": {"$ifNull": ["$ciphertext_len", 0]}}}}  # fmt: skip
        row = next(self.chunks.aggregate([match, group]), {})
        return {"chunks": int(row.get("chunks", 0)), "bytes": int(row.get("bytes", 0))}

    def query_sessions(
        self, query: Doc, sort: list[tuple[str, int]], *, limit: int
    ) -> tuple[list[Doc], int]:
        """Sessions matching a filter built by the caller (`api.listing`), in `sort` order,
        at most `limit`; and how many match `query` in all.

        The caller's `query` may hold a `$cursor` key: a keyset condition that narrows the
        page but not the total."""
        _check_page(limit, 0)
        base = {k: v for k, v in query.items() if k != "$cursor"}
        paged = base if "$cursor" not in query else {"$and": [base, query["$cursor"]]}
        docs = list(self.sessions.find(paged, _NO_ID).sort(sort).limit(limit))
        return docs, int(self.sessions.count_documents(base))
