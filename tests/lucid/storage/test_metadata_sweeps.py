"""The sweeps' session queries on SecantusDB (retention's `find_sessions`, the reconciler's
`unanchored_sessions`): the same sessions as the plain query, read in the one shape
SecantusDB answers from a (state, ...) index alone, so a sweep reads the sessions it may
return rather than every session in the state."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from lucid.lifecycle.states import SessionState
from lucid.storage.metadata import MetadataStore
from tests.lucid.storage.test_metadata import store
from tests.lucid.storage.test_metadata_listing import watched

__all__ = ["store", "watched"]

Doc = dict[str, Any]
NOW = datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _populate(store: MetadataStore) -> None:
    rng = random.Random(3)
    states = ["STOPPED", "STOPPED", "STOPPED", "ERROR", "ACTIVE", "CREATED", "DESTROYED"]
    docs = []
    for i in range(300):
        created = NOW - timedelta(hours=rng.randrange(0, 24 * 90))
        doc: Doc = {
            "session_id": f"{i:04d}{rng.getrandbits(32):08x}",
            "state": rng.choice(states),
            "created_at": _iso(created),
            "updated_at": _iso(created + timedelta(minutes=rng.choice([0, 1, 30, 600]))),
            "merkle_root": rng.choice([None, "ab" * 32]),
            "anchor": rng.choice([None, {}, {"status": "pending"}, {"status": "confirmed"}]),
        }
        if (tenant := rng.choice(["default", "acme", "beta", None, "absent"])) != "absent":
            doc["tenant"] = tenant
        if rng.random() < 0.2:
            doc["legal_hold"] = rng.choice([True, False])
        if rng.random() < 0.3:
            doc["reconciled_at"] = _iso(NOW - timedelta(minutes=rng.choice([1, 90, 6000])))
        docs.append(doc)
    store.sessions.insert_many(docs)


def _ids(docs: list[Doc]) -> list[str]:
    return [d["session_id"] for d in docs]


def _served_by_a_state_index(store: MetadataStore, sent: list[Doc]) -> None:
    """Each find names exactly the fields of one (state, ...) index: state first."""
    indexes = [list(spec["key"]) for spec in store.sessions.list_indexes()]
    for query in sent:
        assert next(iter(query)) == "state" and list(query) in indexes, query


def test_find_sessions_reads_each_state_past_its_bound_and_checks_the_rest(
    store: MetadataStore, watched: Any
) -> None:
    _populate(store)
    watcher, finds = watched
    ended = [SessionState.STOPPED, SessionState.ERROR]
    cases: list[Doc] = [
        {"created_before": _iso(NOW - timedelta(days=30)), "exclude_held": True},
        {"created_before": _iso(NOW - timedelta(days=7)), "tenant_in": ["default", None]},
        {"created_before": _iso(NOW - timedelta(days=7)), "tenant_in": ["acme"], "limit": 5},
        {
            "created_before": _iso(NOW - timedelta(days=10)),
            "tenant_not_in": ["acme", None],
            "exclude_held": True,
        },
        {"updated_before": _iso(NOW - timedelta(days=20)), "limit": 7},
        {
            "created_before": _iso(NOW - timedelta(days=5)),
            "updated_before": _iso(NOW - timedelta(days=6)),
        },
    ]
    for case in cases:
        query: Doc = {"state": {"$in": ["STOPPED", "ERROR"]}}
        sort = "updated_at" if "updated_before" in case else "created_at"
        for field in ("created_at", "updated_at"):
            if (bound := case.get(field.replace("_at", "_before"))) is not None:
                query[field] = {"$lt": bound}
        tenant: Doc = {}
        if "tenant_in" in case:
            tenant["$in"] = case["tenant_in"]
        if "tenant_not_in" in case:
            tenant["$nin"] = case["tenant_not_in"]
        if tenant:
            query["tenant"] = tenant
        if case.get("exclude_held"):
            query["legal_hold"] = {"$ne": True}
        plain = store.sessions.find(query).sort([(sort, 1), ("session_id", 1)])
        expected = _ids(list(plain.limit(case.get("limit", 0))))
        assert expected, case
        finds.filters.clear()
        assert _ids(watcher.find_sessions(ended, **case)) == expected, case
        _served_by_a_state_index(store, finds.filters)


def test_unanchored_sessions_read_only_the_unanchored_ones(
    store: MetadataStore, watched: Any
) -> None:
    _populate(store)
    watcher, finds = watched
    for minutes in (0, 45, 5000):
        before = _iso(NOW - timedelta(minutes=minutes))
        query = {
            "state": "STOPPED",
            "merkle_root": {"$ne": None},
            "anchor.status": {"$ne": "confirmed"},
            "updated_at": {"$lt": before},
            "reconciled_at": {"$not": {"$gte": before}},
        }
        plain = store.sessions.find(query).sort([("updated_at", 1), ("session_id", 1)])
        expected = _ids(list(plain))
        assert expected, minutes
        finds.filters.clear()
        assert sorted(_ids(watcher.unanchored_sessions(before, limit=0))) == sorted(expected)
        assert _ids(watcher.unanchored_sessions(before, limit=3)) == expected[:3]
        _served_by_a_state_index(store, finds.filters)
