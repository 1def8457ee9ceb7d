"""Listing, counting and statistics queries on the metadata store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lucid.crypto.tokens import DEFAULT_TENANT
from lucid.errors import InvalidInput
from lucid.lifecycle.states import ChunkStage, SessionState
from lucid.storage.metadata_base import NO_ID, Doc, MetadataCollections, check_id, check_page

# Time fields with an index of their own (ensure_indexes), and the windows tried newest first.
_TIME_INDEXED = frozenset({"created_at", "updated_at"})
_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=30), timedelta(days=365))


class ListingQueries(MetadataCollections):
    """Sessions listed, filtered and counted; chunk and byte totals."""

    def list_sessions(
        self, limit: int = 50, skip: int = 0, state: str | None = None, tenant: str | None = None
    ) -> list[Doc]:
        """Sessions newest first, optionally only those in `state` and of `tenant` (sessions
        without one belong to DEFAULT_TENANT)."""
        check_page(limit, skip)
        query: Doc = {}
        if tenant is not None:
            query["tenant"] = {"$in": [tenant, None]} if tenant == DEFAULT_TENANT else tenant
        if state is not None:
            try:
                query["state"] = str(SessionState(state))
            except ValueError:
                allowed = ", ".join(SessionState)
                raise InvalidInput(f"unknown state {state!r}; allowed: {allowed}") from None
        cursor = self.sessions.find(query, NO_ID).sort([("created_at", -1), ("_id", -1)])
        return list(cursor.skip(skip).limit(limit))

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
        check_page(limit, 0)
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
        cursor = self.sessions.find(query, {**NO_ID, **dict.fromkeys(fields, True)})
        sort = "updated_at" if updated_before is not None else "created_at"
        return list(cursor.sort([(sort, 1), ("_id", 1)]).limit(limit))

    def count_sessions(self, states: list[SessionState], tenant: str | None = None) -> int:
        """How many sessions are in `states` (of one tenant, when given)."""
        query: Doc = {"state": {"$in": [str(SessionState(s)) for s in states]}}
        if tenant is not None:
            query["tenant"] = tenant
        return int(self.sessions.count_documents(query))

    def stage_counts(self, session_id: str, records: int) -> dict[str, int]:
        """How many of the session's `records` chunk records (indexes 0..records-1) have
        reached each stage; a hashed chunk counts in all four.

        Read from the records not yet hashed alone (an index on session and stage): a
        status costs what is in flight, not the session's length. An aggregate over a
        5,000-chunk session's records held SecantusDB's lock for 150 ms per status poll,
        and the polls during a seal slowed the seal itself."""
        names = {stage.name.lower(): int(stage) for stage in ChunkStage}
        counts = dict.fromkeys(names, records)
        query = {"session_id": check_id(session_id), "stage": {"$lt": int(ChunkStage.HASHED)}}
        for doc in self.chunks.find(query, {**NO_ID, "stage": 1}):
            for name, stage in names.items():
                if int(doc.get("stage", 0)) < stage:
                    counts[name] -= 1
        return counts

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
        match = {"$match": {"session_id": check_id(session_id)}}
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
        check_page(limit, 0)
        base = {k: v for k, v in query.items() if k != "$cursor"}
        cursor = query.get("$cursor") or {}
        # Side by side when they do not collide (a store may plan a flat query better).
        paged = {**base, **cursor} if not set(cursor) & set(base) else {"$and": [base, cursor]}
        return self._newest_first(paged, sort, limit), int(self.sessions.count_documents(base))

    def _newest_first(self, query: Doc, sort: list[tuple[str, int]], limit: int) -> list[Doc]:
        """The page, for a newest-first sort read from recent windows first.

        A store may sort by scanning every document (SecantusDB: ~3 s for 100,000
        sessions) yet answer a range on an indexed time field in milliseconds. If the last
        hour (then day, month, year) already holds `limit` matches, they are the newest
        `limit` of all: everything outside the window is older. Otherwise the whole query.
        """
        field, direction = sort[0]
        if direction != -1 or field not in _TIME_INDEXED or field in query:
            return list(self.sessions.find(query, NO_ID).sort(sort).limit(limit))
        now = datetime.now(UTC)
        for window in _WINDOWS:
            # A top-level condition beside the others, not an $and around them: SecantusDB
            # answers the range from its index only in that form (0.3 s against 4.5 s).
            recent = {**query, field: {"$gte": (now - window).isoformat()}}
            docs = list(self.sessions.find(recent, NO_ID).sort(sort).limit(limit))
            if len(docs) >= limit:
                return docs
        return list(self.sessions.find(query, NO_ID).sort(sort).limit(limit))
