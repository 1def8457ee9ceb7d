"""The list's pages (`query_sessions`) on SecantusDB: keyset cursors, the opt-in total, and
newest-first pages read from windows at the page's upper bound that must give exactly
what a plain sort of every match gives."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from lucid.crypto.tokens import DEFAULT_TENANT
from lucid.storage.metadata import MetadataStore
from tests.lucid.storage.test_metadata import store

__all__ = ["store"]

Doc = dict[str, Any]
NOW = datetime.now(UTC)
# The API's tenant condition for the default tenant (sessions without one belong to it).
MINE: Doc = {"tenant": {"$in": [DEFAULT_TENANT, None]}}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _ids(docs: list[Doc]) -> list[str]:
    return [d["session_id"] for d in docs]


def _ages() -> list[timedelta]:
    """How long before now each session was created: a dense burst (ties included),
    seconds, minutes, hours, days and years (past the last window), and two from a clock
    running ahead."""
    ages = [timedelta(microseconds=-250_000 * i) for i in range(1, 3)]  # in the future
    ages += [timedelta(seconds=s) for s in range(0, 90, 3)]
    ages += [timedelta(minutes=m) for m in (2, 5, 9, 17, 33, 70, 130)]
    ages += [timedelta(hours=h) for h in range(3, 60, 5)]
    ages += [timedelta(days=d) for d in range(3, 100, 9)]
    ages += [timedelta(days=d) for d in range(200, 2600, 190)]
    burst = timedelta(days=1100)  # three years back: beyond every window anchored at now
    ages += [burst + timedelta(milliseconds=37 * i) for i in range(40)]
    ages += [burst + timedelta(seconds=1)] * 9  # nine sessions created in one microsecond
    return ages


def _populate(store: MetadataStore, now: datetime = NOW) -> None:
    rng = random.Random(7)
    docs: list[Doc] = []
    for i, age in enumerate(_ages()):
        created = now - age
        updated = created + timedelta(seconds=rng.choice([0, 0, 5, 4000, 10**6]))
        docs.append({
            "session_id": f"{rng.getrandbits(64):016x}{i:04d}",
            "state": rng.choice(["CREATED", "ACTIVE", "STOPPED"]),
            "tenant": rng.choice([DEFAULT_TENANT, DEFAULT_TENANT, None, "other"]),
            "created_at": _iso(created),
            "updated_at": _iso(updated),
            "history": [],
        })  # fmt: skip
    store.sessions.insert_many(docs)


def _walk(store: MetadataStore, query: Doc, field: str, limit: int) -> list[str]:
    """Every page newest first through the cursor, as the API asks (one more than the page
    tells whether another follows)."""
    order = [(field, -1), ("session_id", -1)]
    seen: list[str] = []
    after = None
    while True:
        docs, total = store.query_sessions(query, order, limit=limit + 1, after=after)
        assert total is None
        page = docs[:limit]
        seen += _ids(page)
        if len(docs) <= limit:
            return seen
        after = (page[-1][field], page[-1]["session_id"])


def test_newest_first_pages_walk_exactly_as_a_full_sort_whatever_the_filters(
    store: MetadataStore,
) -> None:
    _populate(store)
    burst = _iso(NOW - timedelta(days=1100))
    filters: list[Doc] = [
        {},
        {"state": {"$in": ["ACTIVE"]}},
        {"state": {"$in": ["CREATED", "STOPPED"]}},
        {"created_at": {"$lt": _iso(NOW - timedelta(hours=20))}},
        {"created_at": {"$gte": _iso(NOW - timedelta(days=40))}},
        {"created_at": {"$gte": _iso(NOW - timedelta(days=2000)), "$lt": burst}},
        {"created_at": {"$lt": _iso(NOW - timedelta(days=1099))}, "state": {"$in": ["ACTIVE"]}},
        {"updated_at": {"$lt": _iso(NOW - timedelta(minutes=30))}},
        {"updated_at": {"$gte": _iso(NOW - timedelta(days=30))}},
    ]
    for condition in filters:
        query = {**MINE, **condition}
        for field in ("created_at", "updated_at"):
            order = [(field, -1), ("session_id", -1)]
            expected = _ids(list(store.sessions.find(query).sort(order)))
            assert len(expected) > 3, condition
            for limit in (4, 50) if condition else (1, 3, 7, 50, 1000):
                assert _walk(store, query, field, limit) == expected, (condition, field, limit)


def test_oldest_first_pages_walk_as_a_full_sort(store: MetadataStore) -> None:
    _populate(store)
    query = {**MINE, "state": {"$in": ["CREATED", "ACTIVE"]}}
    order = [("created_at", 1), ("session_id", 1)]
    expected = _ids(list(store.sessions.find(query).sort(order)))
    seen: list[str] = []
    after = None
    while True:
        docs, _ = store.query_sessions(query, order, limit=6, after=after)
        seen += _ids(docs[:5])
        if len(docs) <= 5:
            break
        after = (docs[4]["created_at"], docs[4]["session_id"])
    assert seen == expected


class _Finds(monitoring.CommandListener):
    """The `find` commands a client sends to the sessions collection."""

    def __init__(self) -> None:
        self.filters: list[Doc] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command["find"] == "sessions":
            self.filters.append(event.command.get("filter", {}))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def watched(store: MetadataStore, mongodb_url: str) -> Iterator[tuple[MetadataStore, _Finds]]:
    """The same database through a client that records every find it sends."""
    finds = _Finds()
    client: pymongo.MongoClient[Doc] = pymongo.MongoClient(mongodb_url, event_listeners=[finds])
    yield MetadataStore(client[store.db.name]), finds
    client.close()


def test_a_page_is_read_from_the_window_at_its_upper_bound_not_from_now(
    store: MetadataStore, watched: tuple[MetadataStore, _Finds]
) -> None:
    # A page three years back (its cursor, or created_before) holds its sessions within a
    # minute of its upper bound: one small window answers it. Windows anchored at now would
    # widen twenty times and end in the whole query. Aged from the test's own now, not the
    # module's: the first page's window is anchored at the real now, minutes later in CI.
    now = datetime.now(UTC)
    _populate(store, now)
    watcher, finds = watched
    order = [("created_at", -1), ("session_id", -1)]
    in_burst = list(
        store.sessions.find({**MINE, "created_at": {"$lt": _iso(now - timedelta(days=1099))}})
        .sort(order)
        .limit(30)
    )
    everything = _ids(list(store.sessions.find(MINE).sort(order)))
    cursor = everything.index(in_burst[20]["session_id"])
    before = {**MINE, "created_at": {"$lt": in_burst[5]["created_at"]}}
    pages = {
        "first page": (MINE, None, everything[:5]),
        "cursor in the past": (
            MINE,
            (in_burst[20]["created_at"], in_burst[20]["session_id"]),
            everything[cursor + 1 : cursor + 6],
        ),
        "created_before": (before, None, _ids(list(store.sessions.find(before).sort(order)))[:5]),
    }
    for name, (query, after, expected) in pages.items():
        finds.filters.clear()
        docs, _ = watcher.query_sessions(query, order, limit=5, after=after)
        assert _ids(docs) == expected, name
        assert len(finds.filters) <= 2, (name, finds.filters)  # the ties at a cursor, a window
        assert all(not any(k.startswith("$") for k in f) for f in finds.filters), name


def test_the_total_is_counted_only_when_asked(store: MetadataStore) -> None:
    for i in range(5):
        store.create_session(f"s{i}", {"metadata": {"labels": {"k": "v" if i % 2 else "w"}}})
    query = {"metadata.labels.k": "v"}
    order = [("created_at", 1), ("session_id", 1)]
    docs, total = store.query_sessions(query, order, limit=1, total=True)
    assert _ids(docs) == ["s1"] and total == 2
    after = (docs[0]["created_at"], "s1")
    docs, total = store.query_sessions(query, order, limit=5, after=after, total=True)
    assert _ids(docs) == ["s3"] and total == 2  # the cursor narrows the page, not the total
    assert store.query_sessions(query, order, limit=5)[1] is None


def test_only_the_fields_asked_for_and_the_sorts_come_back(store: MetadataStore) -> None:
    _populate(store)
    for field, direction in (("updated_at", -1), ("created_at", 1)):
        order = [(field, direction), ("session_id", direction)]
        docs, _ = store.query_sessions(MINE, order, limit=3, fields=["state", "tenant"])
        assert len(docs) == 3
        assert all(set(d) <= {"state", "tenant", field, "session_id"} for d in docs)
        assert all({"state", field, "session_id"} <= set(d) for d in docs)


def _quiet_spell(store: MetadataStore, now: datetime) -> None:
    """A busy two hours (a session every 6 s) that ended ten hours ago."""
    busy_end = now - timedelta(hours=10)
    store.sessions.insert_many([
        {
            "session_id": f"q{i:05d}",
            "state": "STOPPED" if i % 3 else "ERROR",
            "tenant": None,
            "created_at": _iso(busy_end - timedelta(seconds=6 * i)),
            "updated_at": _iso(busy_end - timedelta(seconds=6 * i)),
            "history": [],
        }
        for i in range(1200)
    ])  # fmt: skip


def _read_by(store: MetadataStore, filters: list[Doc]) -> int:
    """How many sessions the finds' time ranges hold: SecantusDB reads every one of them
    from the time's index, whatever else the filter asks."""
    return sum(
        store.sessions.count_documents({"created_at": f["created_at"]} if "created_at" in f else f)
        for f in filters
    )


def test_after_a_quiet_spell_a_page_reads_about_a_page_not_the_spell(
    store: MetadataStore, watched: tuple[MetadataStore, _Finds]
) -> None:
    # Windows doubling back from now reach the busy hours with one that is eight hours
    # wide and holds all 1,200 of them, read in full to return 50, on every request for as
    # long as it stays quiet. Once a page has found the newest sessions, the next one
    # takes its window from there, whatever its filter.
    now = datetime.now(UTC)
    _quiet_spell(store, now)
    watcher, finds = watched
    order = [("created_at", -1), ("session_id", -1)]

    def page(query: Doc) -> int:
        """Read the first page through the watcher; how many sessions its finds read."""
        finds.filters.clear()
        docs, _ = watcher.query_sessions(query, order, limit=51)
        assert _ids(docs) == _ids(list(store.sessions.find(query).sort(order).limit(51)))
        return _read_by(store, finds.filters)

    assert page({}) == 1200  # the first, before any landmark
    assert page({}) <= 2 * 51
    assert page({**MINE, "state": "STOPPED"}) <= 2 * 76  # two in three are STOPPED
    assert page({"state": {"$in": ["ERROR"]}}) <= 2 * 153  # one in three


def test_a_page_is_exact_wherever_the_newest_sessions_were_last_seen(
    store: MetadataStore,
) -> None:
    # Where a listing last saw its newest sessions only shapes its windows: pages stay
    # exact when those sessions are gone, when newer ones arrive, and for other filters.
    now = datetime.now(UTC)
    _quiet_spell(store, now)
    order = [("created_at", -1), ("session_id", -1)]

    def exact(query: Doc) -> None:
        assert _walk(store, query, "created_at", 40) == _ids(
            list(store.sessions.find(query).sort(order))
        ), query

    exact({})
    store.sessions.delete_many({"session_id": {"$lt": "q00100"}})  # the newest 100 are shred
    exact({})
    exact({"state": "ERROR"})
    store.sessions.insert_many([
        {"session_id": f"n{i}", "state": "ACTIVE", "tenant": None, "history": [],
         "created_at": _iso(now - timedelta(minutes=i)), "updated_at": _iso(now)}
        for i in (-1, 3, 30, 300)  # one from a clock running ahead
    ])  # fmt: skip
    exact({})
    exact({"state": "STOPPED"})
