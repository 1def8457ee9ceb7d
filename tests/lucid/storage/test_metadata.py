"""MetadataStore against a real MongoDB-wire server (SecantusDB, started by conftest)."""

from __future__ import annotations

import threading
from typing import Any

import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from lucid.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from lucid.lifecycle.states import ChunkStage, SessionState, Trigger
from lucid.storage.metadata import MetadataStore

Db = pymongo.database.Database[dict[str, Any]]


@pytest.fixture
def store(mongo_db: Db) -> MetadataStore:
    s = MetadataStore(mongo_db)
    s.ensure_indexes()
    return s


def test_create_get_and_list_newest_first(store: MetadataStore) -> None:
    for i in range(3):
        doc = store.create_session(f"s{i}", {"chunk_size": 1024, "metadata": {"n": i}})
    assert doc["state"] == "CREATED"
    assert doc["history"] == []
    assert "_id" not in doc
    got = store.get_session("s2")
    assert got == doc
    assert got["created_at"] == got["updated_at"]
    assert got["created_at"].endswith("+00:00")
    assert [d["session_id"] for d in store.list_sessions()] == ["s2", "s1", "s0"]
    assert [d["session_id"] for d in store.list_sessions(limit=1, skip=1)] == ["s1"]
    store.apply_trigger("s0", Trigger.START)
    assert [d["session_id"] for d in store.list_sessions(state="STARTING")] == ["s0"]
    assert all("_id" not in d for d in store.list_sessions())
    with pytest.raises(InvalidInput, match="unknown state"):
        store.list_sessions(state="RUNNING")


def test_duplicate_create_is_a_conflict(store: MetadataStore) -> None:
    store.create_session("s", {"chunk_size": 1})
    with pytest.raises(Conflict, match="already exists"):
        store.create_session("s", {"chunk_size": 2})
    assert store.get_session("s")["chunk_size"] == 1


def test_missing_session_is_not_found(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        store.get_session("nope")
    with pytest.raises(NotFound):
        store.apply_trigger("nope", Trigger.START)
    with pytest.raises(NotFound):
        store.update_session("nope", {"x": 1})


def test_store_managed_fields_cannot_be_overwritten(store: MetadataStore) -> None:
    with pytest.raises(InvalidInput, match="state"):
        store.create_session("s", {"state": "ACTIVE"})
    store.create_session("s", {})
    with pytest.raises(InvalidInput, match="history"):
        store.update_session("s", {"history": []})
    with pytest.raises(InvalidInput, match="state"):
        store.apply_trigger("s", Trigger.START, set_fields={"state": "STOPPED"})
    with pytest.raises(InvalidInput, match="stage"):
        store.record_chunk("s", 0, ChunkStage.RECEIVED, {"stage": 3})
    with pytest.raises(InvalidInput, match="index"):
        store.record_chunk("s", 0, ChunkStage.RECEIVED, {"index": 1})


def test_full_lifecycle_records_history(store: MetadataStore) -> None:
    store.create_session("s", {"chunk_count": None})
    steps = [Trigger.START, Trigger.START_COMPLETE, Trigger.PAUSE, Trigger.PAUSE_COMPLETE]
    steps += [Trigger.STOP, Trigger.STOP_COMPLETE, Trigger.CLEANUP, Trigger.CLEANUP_COMPLETE]
    for trigger in steps:
        fields = {"chunk_count": 7} if trigger is Trigger.STOP else None
        by = "alice" if trigger is Trigger.START else None
        doc = store.apply_trigger("s", trigger, reason=f"r-{trigger}", set_fields=fields, by=by)
    assert doc == store.get_session("s")
    assert doc["state"] == "DESTROYED"
    assert doc["chunk_count"] == 7
    history = doc["history"]
    assert [h["trigger"] for h in history] == [str(t) for t in steps]
    assert [h["from_state"] for h in history[1:]] == [h["to_state"] for h in history[:-1]]
    assert history[0] | {"at": None} == {
        "from_state": "CREATED", "trigger": "START", "to_state": "STARTING",
        "at": None, "reason": "r-START", "by": "alice",
    }  # fmt: skip
    assert history[1]["by"] is None
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert doc["updated_at"] >= history[-1]["at"] > doc["created_at"]


def test_invalid_trigger_changes_nothing(store: MetadataStore) -> None:
    store.create_session("s", {})
    with pytest.raises(InvalidTransition, match="cannot STOP a session in state CREATED"):
        store.apply_trigger("s", Trigger.STOP, set_fields={"chunk_count": 3})
    doc = store.get_session("s")
    assert doc["state"] == "CREATED"
    assert doc["history"] == []
    assert "chunk_count" not in doc


def test_expect_state_guards_trigger_and_update(store: MetadataStore) -> None:
    store.create_session("s", {})
    with pytest.raises(Conflict, match="expected ACTIVE"):
        store.apply_trigger("s", Trigger.START, expect_state=SessionState.ACTIVE)
    with pytest.raises(Conflict, match="is CREATED, expected ACTIVE"):
        store.update_session("s", {"bytes": 1}, expect_state=SessionState.ACTIVE)
    assert "bytes" not in store.get_session("s")
    doc = store.update_session("s", {"bytes": 2}, expect_state=SessionState.CREATED)
    assert doc["bytes"] == 2
    assert doc["updated_at"] > doc["created_at"]
    assert store.update_session("s", {"bytes": 3})["bytes"] == 3


def test_racing_triggers_have_exactly_one_winner(store: MetadataStore) -> None:
    store.create_session("s", {})
    n = 8
    outcomes: list[str] = []
    barrier = threading.Barrier(n)

    def race(i: int) -> None:
        barrier.wait()
        try:
            store.apply_trigger("s", Trigger.START, set_fields={"winner": i})
            outcomes.append("won")
        except Conflict as exc:  # InvalidTransition (a Conflict) if the winner moved it first
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1, outcomes
    doc = store.get_session("s")
    assert doc["state"] == "STARTING"
    assert len(doc["history"]) == 1


class _Interleaved:
    """The real collection, with another worker's write slipped in just before the CAS."""

    def __init__(self, collection: Any, before: Any) -> None:
        self._collection, self._before = collection, before

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        self._before()
        return self._collection.find_one_and_update(*args, **kwargs)


@pytest.mark.parametrize(
    ("setup", "theirs", "ours"),
    [
        ([Trigger.START, Trigger.START_COMPLETE], Trigger.PAUSE, Trigger.STOP),
        ([Trigger.START, Trigger.ERROR], Trigger.ERROR, Trigger.ERROR),  # self-loop
    ],
    ids=["move", "self-loop"],
)
def test_trigger_loses_to_a_write_between_read_and_cas(
    store: MetadataStore, mongo_db: Db, setup: list[Trigger], theirs: Trigger, ours: Trigger
) -> None:
    store.create_session("s", {})
    for step in setup:
        store.apply_trigger("s", step)
    other = MetadataStore(mongo_db)
    store.sessions = _Interleaved(  # type: ignore[assignment]
        store.sessions, lambda: other.apply_trigger("s", theirs, reason="theirs")
    )
    with pytest.raises(Conflict, match="changed concurrently") as info:
        store.apply_trigger("s", ours, reason="ours", set_fields={"lost": True})
    assert not isinstance(info.value, InvalidTransition)
    doc = other.get_session("s")
    assert [h["reason"] for h in doc["history"]][-1] == "theirs"
    assert len(doc["history"]) == len(setup) + 1
    assert "lost" not in doc


def test_chunk_stage_never_regresses_and_counts_are_right(store: MetadataStore) -> None:
    store.create_session("s", {})
    assert store.stage_counts("s", 0) == {
        "received": 0,
        "compressed": 0,
        "encrypted": 0,
        "hashed": 0,
    }
    store.record_chunk(
        "s", 0, ChunkStage.HASHED, {"leaf_hash": "ab", "session_id": "s", "index": 0}
    )
    store.record_chunk("s", 0, ChunkStage.RECEIVED, {"final": False})  # a late redelivery
    store.record_chunk("s", 0, ChunkStage.RECEIVED, {"final": False})
    store.record_chunk("s", 1, ChunkStage.ENCRYPTED, {"ciphertext_len": 9})
    store.record_chunk("s", 2, ChunkStage.RECEIVED, {"final": True})
    store.record_chunk("other", 0, ChunkStage.HASHED, {})
    chunk = store.get_chunk("s", 0)
    assert chunk["stage"] == ChunkStage.HASHED
    assert chunk["leaf_hash"] == "ab"
    assert chunk["final"] is False
    assert "_id" not in chunk
    assert store.stage_counts("s", 3) == {
        "received": 3,
        "compressed": 2,
        "encrypted": 2,
        "hashed": 1,
    }
    assert [c["index"] for c in store.list_chunks("s")] == [0, 1, 2]
    assert [c["index"] for c in store.list_chunks("s", skip=1, limit=1)] == [1]
    with pytest.raises(NotFound):
        store.get_chunk("s", 3)
    with pytest.raises(InvalidInput):
        store.record_chunk("s", -1, ChunkStage.RECEIVED, {})


def test_stage_counts_from_the_unhashed_records_match_every_record(
    store: MetadataStore,
) -> None:
    store.create_session("s", {})
    stages = [ChunkStage.HASHED] * 6 + [ChunkStage.ENCRYPTED, ChunkStage.RECEIVED,
              ChunkStage.COMPRESSED, ChunkStage.HASHED, ChunkStage.RECEIVED]  # fmt: skip
    for index, stage in enumerate(stages):
        store.record_chunk("s", index, stage, {})
    store.record_chunk("other", 0, ChunkStage.RECEIVED, {})
    records = store.list_chunks("s")
    expected = {
        stage.name.lower(): sum(1 for r in records if r["stage"] >= stage) for stage in ChunkStage
    }
    assert store.stage_counts("s", len(records)) == expected
    assert expected == {"received": 11, "compressed": 9, "encrypted": 8, "hashed": 7}


def test_the_seal_reads_only_what_it_needs(store: MetadataStore) -> None:
    store.create_session("s", {})
    for index, stage in enumerate((ChunkStage.HASHED, ChunkStage.COMPRESSED, ChunkStage.HASHED,
                                   ChunkStage.RECEIVED)):  # fmt: skip
        store.record_chunk("s", index, stage, {"leaf_hash": f"h{index}", "raw_key": "k"})
    store.record_chunk("other", 0, ChunkStage.RECEIVED, {})
    assert store.unhashed_indexes("s") == [1, 3]
    docs = store.list_chunks("s", fields=("index", "leaf_hash"))
    assert docs == [{"index": i, "leaf_hash": f"h{i}"} for i in range(4)]


def test_last_chunk_from_a_hint_is_the_highest_record_whatever_the_hint(
    store: MetadataStore,
) -> None:
    store.create_session("s", {})
    assert store.last_chunk("s") is None and store.last_chunk("s", at_least=3) is None
    for index in range(10):
        store.record_chunk("s", index, ChunkStage.RECEIVED, {"raw_key": f"k{index}"})
    store.record_chunk("other", 50, ChunkStage.RECEIVED, {})
    for hint in (0, 1, 8, 9, 10, 40):  # 10 and 40: no record there, all are read
        last = store.last_chunk("s", at_least=hint)
        assert last is not None and last["index"] == 9 and last["session_id"] == "s"


def test_concurrent_record_chunk_converges(store: MetadataStore) -> None:
    stages = list(ChunkStage) * 4
    barrier = threading.Barrier(len(stages))

    def record(stage: ChunkStage) -> None:
        barrier.wait()
        store.record_chunk("s", 5, stage, {"plaintext_len": 10})

    threads = [threading.Thread(target=record, args=(s,)) for s in stages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.list_chunks("s")) == 1
    assert store.get_chunk("s", 5)["stage"] == ChunkStage.HASHED


def test_unique_indexes_are_enforced(store: MetadataStore, mongo_db: Db) -> None:
    store.ensure_indexes()  # idempotent
    store.create_session("s", {})
    store.record_chunk("s", 0, ChunkStage.RECEIVED, {})
    store.record_anchor("s", {"root": "aa"})
    duplicates: list[tuple[str, dict[str, Any]]] = [
        ("sessions", {"session_id": "s"}),
        ("chunks", {"session_id": "s", "index": 0}),
        ("anchors", {"session_id": "s"}),
    ]
    for name, doc in duplicates:
        with pytest.raises(DuplicateKeyError):
            mongo_db[name].insert_one(doc)
    mongo_db["chunks"].insert_one({"session_id": "s", "index": 1})  # (session, index) pairs


def test_anchor_round_trip_and_replace(store: MetadataStore) -> None:
    assert store.get_anchor("s") is None
    receipt = {"backend": "ledger", "status": "pending", "root": "ab", "details": {"n": 1}}
    store.record_anchor("s", receipt)
    assert store.get_anchor("s") == receipt
    store.record_anchor("s", receipt | {"status": "confirmed"})
    assert store.get_anchor("s") == receipt | {"status": "confirmed"}


def test_delete_session_removes_everything_it_owns(store: MetadataStore) -> None:
    for sid in ("s", "keep"):
        store.create_session(sid, {})
        store.record_chunk(sid, 0, ChunkStage.RECEIVED, {})
        store.record_anchor(sid, {"root": sid})
    store.delete_session("s")
    store.delete_session("s")  # missing is fine
    with pytest.raises(NotFound):
        store.get_session("s")
    assert store.list_chunks("s") == []
    assert store.get_anchor("s") is None
    assert store.get_session("keep")
    assert store.list_chunks("keep")
    assert store.get_anchor("keep")


def test_connect_shares_one_client_per_url(mongodb_url: str) -> None:
    a = MetadataStore.connect(mongodb_url, "t_connect_a")
    b = MetadataStore.connect(mongodb_url, "t_connect_b")
    assert a.db.client is b.db.client
    assert (a.db.name, b.db.name) == ("t_connect_a", "t_connect_b")
    a.ping()
