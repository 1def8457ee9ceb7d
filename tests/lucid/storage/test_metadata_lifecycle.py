"""The store's queries for editing, pausing and statistics, on SecantusDB (the list's in
test_metadata_listing)."""

from __future__ import annotations

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
