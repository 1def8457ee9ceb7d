"""The store's queries for editing, pausing, listing and statistics, on SecantusDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lucid.errors import Conflict
from lucid.lifecycle.states import ChunkStage, SessionState, Trigger
from lucid.storage.metadata import MetadataStore
from tests.lucid.storage.test_metadata import store

__all__ = ["store"]


def test_replace_metadata_refuses_a_session_being_destroyed(store: MetadataStore) -> None:
    store.create_session("s", {"metadata": {"a": 1}})
    assert store.replace_metadata("s", {"b": 2})["metadata"] == {"b": 2}
    store.apply_trigger("s", Trigger.CLEANUP)
    with pytest.raises(Conflict, match="CLEANUP"):
        store.replace_metadata("s", {"c": 3})


def test_held_chunks_are_released_once_and_counted(store: MetadataStore) -> None:
    store.create_session("s", {})
    for i in range(3):
        store.record_chunk("s", i, ChunkStage.RECEIVED, {"plaintext_len": 10, "final": i == 2})
    store.record_chunk("s", 0, ChunkStage.HASHED, {"compressed_len": 4, "ciphertext_len": 20})
    store.mark_chunk_held("s", 1, True)
    store.mark_chunk_held("s", 2, True)
    totals = store.chunk_totals("s")
    assert totals == {"chunks": 3, "held": 2, "plaintext_bytes": 30, "compressed_bytes": 4,
                      "ciphertext_bytes": 20}  # fmt: skip
    assert [c["index"] for c in store.release_held_chunks("s")] == [1, 2]
    assert store.release_held_chunks("s") == []
    assert store.chunk_totals("s")["held"] == 0
    assert store.stored_totals() == {"chunks": 1, "bytes": 20}


def test_pipeline_pause_flag(store: MetadataStore) -> None:
    store.create_session("s", {})
    assert not store.pipeline_paused("s") and not store.pipeline_paused("missing")
    store.set_pipeline_paused("s", True, by="ops")
    assert store.pipeline_paused("s")
    assert store.get_session("s")["pipeline_paused_by"] == "ops"


def test_sessions_by_state_lists_every_state(store: MetadataStore) -> None:
    for sid in ("a", "b", "c"):
        store.create_session(sid, {})
    store.apply_trigger("c", Trigger.START)
    counts = store.sessions_by_state()
    assert counts[SessionState.CREATED] == 2 and counts[SessionState.STARTING] == 1
    assert counts[SessionState.DESTROYED] == 0 and len(counts) == len(SessionState)


def test_query_sessions_pages_by_keyset_and_counts_all(store: MetadataStore) -> None:
    for i in range(5):
        store.create_session(f"s{i}", {"metadata": {"labels": {"k": "v" if i % 2 else "w"}}})
    query = {"metadata.labels.k": "v"}
    docs, total = store.query_sessions(query, [("created_at", 1), ("session_id", 1)], limit=1)
    assert [d["session_id"] for d in docs] == ["s1"] and total == 2
    seen = docs[0]["created_at"]
    same_time_later_id = {"created_at": seen, "session_id": {"$gt": "s1"}}
    after = {"$or": [{"created_at": {"$gt": seen}}, same_time_later_id]}
    docs, total = store.query_sessions(
        {**query, "$cursor": after}, [("created_at", 1), ("session_id", 1)], limit=5
    )
    assert [d["session_id"] for d in docs] == ["s3"] and total == 2


def test_newest_first_pages_are_the_same_whichever_window_holds_them(
    store: MetadataStore,
) -> None:
    # Sessions from now back to two years ago: each page must be exactly the newest ones,
    # whether the last hour holds enough of them or the read has to widen (or scan all).
    now = datetime.now(UTC)
    ages = [timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=3),
            timedelta(days=3), timedelta(days=90), timedelta(days=700)]  # fmt: skip
    for i, age in enumerate(ages):
        store.create_session(f"w{i}", {"metadata": {"labels": {"run": "windows"}}})
        at = (now - age).isoformat()
        store.sessions.update_one({"session_id": f"w{i}"}, {"$set": {"created_at": at}})
    query = {"metadata.labels.run": "windows"}
    for limit in range(1, len(ages) + 2):
        docs, total = store.query_sessions(
            query, [("created_at", -1), ("session_id", -1)], limit=limit
        )
        assert [d["session_id"] for d in docs] == [f"w{i}" for i in range(min(limit, 6))]
        assert total == len(ages)
