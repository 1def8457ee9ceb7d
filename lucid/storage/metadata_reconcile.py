"""The reconciler's queries on the metadata store: work idle since a cutoff, and claims."""

from __future__ import annotations

from lucid.lifecycle.states import ChunkStage, SessionState
from lucid.storage.metadata_base import NO_ID, Doc, MetadataCollections, check_id


def _idle(doc: Doc, before: str) -> bool:
    """`updated_at < before` and not `reconciled_at >= before`, as the store compares them
    (text with text)."""
    updated, reconciled = doc.get("updated_at"), doc.get("reconciled_at")
    seen = isinstance(reconciled, str) and reconciled >= before
    return isinstance(updated, str) and updated < before and not seen


class ReconcileQueries(MetadataCollections):
    """The reconciler's queries. `reconciled_at` is its own stamp: it never touches
    `updated_at`, which keeps meaning "last progress"."""

    def idle_chunks(self, before: str, *, limit: int) -> list[Doc]:
        """Chunks below HASHED unchanged and not reconciled since `before`, oldest first."""
        query = {
            "stage": {"$lt": int(ChunkStage.HASHED)},
            "updated_at": {"$lt": before},
            "reconciled_at": {"$not": {"$gte": before}},
        }
        return list(self.chunks.find(query, NO_ID).sort("updated_at", 1).limit(limit))

    def unsealed_sessions(self, before: str, *, limit: int) -> list[Doc]:
        """Sessions STOPPING without a root, unchanged and not reconciled since `before`."""
        return self._idle_sessions(
            {"state": str(SessionState.STOPPING), "merkle_root": None}, before, limit
        )

    def unanchored_sessions(self, before: str, *, limit: int) -> list[Doc]:
        """Sessions STOPPED with a root but no confirmed anchor receipt, unchanged and not
        reconciled since `before`.

        Read as `{state, anchor.status: none or pending}` alone (the receipt's statuses
        are pending and confirmed): SecantusDB answers that shape from the (state,
        anchor.status) index, reading only the unanchored sessions. With the other
        conditions beside it, it read every STOPPED session (3-4 s for 100,000, holding
        its lock, on every reconcile sweep), so those are checked here."""
        query = {"state": str(SessionState.STOPPED), "anchor.status": {"$in": [None, "pending"]}}
        docs = [
            doc
            for doc in self.sessions.find(query, NO_ID)
            if doc.get("merkle_root") is not None and _idle(doc, before)
        ]
        docs.sort(key=lambda doc: (doc["updated_at"], doc["session_id"]))
        return docs[:limit] if limit else docs

    def _idle_sessions(self, query: Doc, before: str, limit: int) -> list[Doc]:
        query = {
            **query,
            "updated_at": {"$lt": before},
            "reconciled_at": {"$not": {"$gte": before}},
        }
        return list(self.sessions.find(query, NO_ID).sort("updated_at", 1).limit(limit))

    def session_states(self, session_ids: list[str]) -> dict[str, SessionState]:
        """The state of each of `session_ids` that exists."""
        docs = self.sessions.find(
            {"session_id": {"$in": session_ids}}, {"session_id": 1, "state": 1}
        )
        return {d["session_id"]: SessionState(d["state"]) for d in docs}

    def chunks_changed_since(self, session_id: str, since: str) -> bool:
        """Whether any chunk of the session was recorded at or after `since`."""
        query = {"session_id": check_id(session_id), "updated_at": {"$gte": since}}
        return self.chunks.find_one(query, {"_id": 1}) is not None

    def claim_chunk(self, session_id: str, index: int, before: str, now: str) -> bool:
        """Stamp the chunk reconciled at `now` unless a sweep did since `before` (one wins)."""
        query = {
            "session_id": check_id(session_id),
            "index": index,
            "reconciled_at": {"$not": {"$gte": before}},
        }
        return self.chunks.update_one(query, {"$set": {"reconciled_at": now}}).modified_count == 1

    def claim_session(self, session_id: str, state: SessionState, before: str, now: str) -> bool:
        """Stamp the session reconciled at `now` if it is still in `state` and no sweep did
        since `before` (one wins)."""
        query = {
            "session_id": check_id(session_id),
            "state": str(SessionState(state)),
            "reconciled_at": {"$not": {"$gte": before}},
        }
        update = {"$set": {"reconciled_at": now}}
        return self._sessions_progress.update_one(query, update).modified_count == 1
