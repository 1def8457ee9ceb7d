"""Listing, counting and statistics queries on the metadata store."""

from __future__ import annotations

import threading
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from functools import cached_property

from lucid.crypto.tokens import DEFAULT_TENANT
from lucid.errors import InvalidInput
from lucid.lifecycle.states import LIVE_STATES, ChunkStage, SessionState
from lucid.storage.metadata_base import NO_ID, Doc, MetadataCollections, check_id, check_page

# Time fields with an index of their own (ensure_indexes). Newest-first pages are read
# from windows below the page's upper bound: a minute, then each twice as wide, up to
# about two years (21 windows); then everything older. Doubling, not more: an empty window
# costs ~2 ms on SecantusDB but each session in a window ~0.1 ms, and after a quiet spell
# the window that reaches the sessions reads at most as many again as the spell is long
# (x4 read up to three times as many: 85 ms for the first page after 5 quiet minutes at
# one session a second).
_TIME_INDEXED = frozenset({"created_at", "updated_at"})
_LIVE = frozenset(str(s) for s in LIVE_STATES)
_FIRST_WINDOW = timedelta(minutes=1)
_LAST_WINDOW = timedelta(days=730)
_GROWTH = 2


class _Landmarks:
    """Where each listing (sort field and filter) last found its newest match, at most
    `size` of them, the oldest forgotten first; and per sort field, the newest of all.

    Only a starting point for the windows, never a result: a landmark that is stale (its
    sessions shred, newer ones created since) costs a window or two, not a wrong page."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._seen: dict[tuple[str, str], datetime] = {}
        self._newest: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def get(self, field: str, key: str) -> datetime | None:
        """The filter's landmark; for a filter not listed yet, the newest any listing by
        `field` found (its matches can only be at or below it)."""
        return self._seen.get((field, key)) or self._newest.get(field)

    def saw(self, field: str, key: str, docs: list[Doc], now: datetime) -> None:
        """Note the newest time in `docs` (a page, newest first) not ahead of `now` (a
        clock running ahead would leave a landmark that no page below now can use)."""
        moment = next((t for d in docs if (t := _time_of(d, field)) and t <= now), None)
        if moment is None:
            return
        with self._lock:
            newest = self._newest.get(field)
            if newest is None or moment > newest:
                self._newest[field] = moment
            known = self._seen.get((field, key))
            if known is not None and moment <= known:
                return
            self._seen.pop((field, key), None)
            if len(self._seen) >= self._size:
                self._seen.pop(next(iter(self._seen)))
            self._seen[(field, key)] = moment


def _time_of(doc: Doc, field: str) -> datetime | None:
    """The doc's `field` as an aware datetime; None if it has none or it is malformed."""
    value = doc.get(field)
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _before(moment: datetime, width: timedelta) -> str | None:
    """`width` before `moment`, in the store's format; None before year 1."""
    try:
        return (moment - width).isoformat(timespec="microseconds")
    except OverflowError:
        return None


def _range(lowest: str | None, below: str | None) -> Doc:
    return {op: v for op, v in (("$gte", lowest), ("$lt", below)) if v is not None}


def _live_only(states: object) -> bool:
    """Whether a state condition (a name, or {"$in": names}) names only live states."""
    names = states["$in"] if isinstance(states, dict) and set(states) == {"$in"} else [states]
    return bool(names) and all(isinstance(name, str) and name in _LIVE for name in names)


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
        matches sessions without a tenant); only their ids, tenant, state and times.

        Each state is read as `{state, time < bound}` alone: SecantusDB answers that shape
        from the (state, time) index, reading only the sessions past the bound. With the
        tenant and hold conditions beside it, it read every session in the states (4-7 s
        for 100,000 ended sessions, holding its lock, on every retention sweep), so those
        are checked here."""
        check_page(limit, 0)
        sort = "updated_at" if updated_before is not None else "created_at"
        bounds = {"created_at": created_before, "updated_at": updated_before}
        fields = {"session_id", "tenant", "state", "created_at", "updated_at", "legal_hold"}
        projection = {**NO_ID, **dict.fromkeys(fields, True)}

        def wanted(doc: Doc) -> bool:
            tenant = doc.get("tenant")
            return (
                all(
                    isinstance(doc.get(f), str) and doc[f] < b
                    for f, b in bounds.items()
                    if b is not None
                )
                and (tenant_in is None or tenant in tenant_in)
                and (tenant_not_in is None or tenant not in tenant_not_in)
                and not (exclude_held and doc.get("legal_hold") is True)
            )

        found: list[Doc] = []
        for state in dict.fromkeys(str(SessionState(s)) for s in states):
            query: Doc = {"state": state}
            if bounds[sort] is not None:
                query[sort] = {"$lt": bounds[sort]}
            found += filter(wanted, self.sessions.find(query, projection))
        found.sort(key=lambda doc: (doc.get(sort) or "", doc["session_id"]))
        return found[:limit] if limit else found

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
        self,
        query: Doc,
        sort: list[tuple[str, int]],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        total: bool = False,
        fields: Collection[str] | None = None,
    ) -> tuple[list[Doc], int | None]:
        """Sessions matching a filter built by the caller (`api.listing`), in `sort` order
        (a time field, then session_id), at most `limit`, from just after `after` (the sort
        value and session id of the previous page's last session) when given; only
        `fields` of them (and the sort's) when given: a session's leaves, key and history
        are most of its bytes.

        With `total`, also how many match `query` in all, whatever the page; else None.
        Opt-in because the count reads every match: 3-4 s for 100,000 sessions on
        SecantusDB, holding its one storage lock, so every other request waits behind it."""
        check_page(limit, 0)
        count = int(self.sessions.count_documents(query)) if total else None
        field, direction = sort[0]
        shown = NO_ID if fields is None else dict.fromkeys({*fields, field, "session_id"}, True)
        bounds = query.get(field, {})
        if (
            direction == -1
            and field in _TIME_INDEXED
            and isinstance(bounds, dict)
            and set(bounds) <= {"$gte", "$lt"}
        ):
            return self._newest_first(query, field, limit, after, shown), count
        if after is not None:
            value, last_id = after
            op = "$lt" if direction == -1 else "$gt"
            keyset = {"$or": [{field: {op: value}}, {field: value, "session_id": {op: last_id}}]}
            query = {**query, **keyset} if "$or" not in query else {"$and": [query, keyset]}
        return self._page(query, sort, limit, shown), count

    def _newest_first(
        self, query: Doc, field: str, limit: int, after: tuple[str, str] | None, shown: Doc
    ) -> list[Doc]:
        """The page for a newest-first sort, read from windows below its upper bound.

        SecantusDB sorts by materialising every candidate (3-4 s for 100,000 sessions) but
        answers a range on an indexed time from the index, at a cost in proportion to the
        sessions in the range. The page's upper bound is its cursor's time, else the
        query's own (`created_before`), else now. If the window `field >= bound - w`
        holds `limit` matches, they are the newest `limit` of all: everything outside the
        window is older. Otherwise the next window reaches twice as far back, and
        only the slice it adds is read, for the matches still missing; past about two
        years, everything older. A bound the query already has (`created_after`) joins
        the window's in one condition, and a window reaching past it is the last.

        Every condition is flat, and the one SecantusDB should answer from an index comes
        first: it plans an $or or $and without any index, and a filter on the first of its
        fields that has one. So a cursor's keyset is read in two steps: the sessions at
        its very time after its id, then those strictly older. Only live states asked
        for: their index leads and one read takes them all (admission keeps them few),
        where windows would read every session in between.

        After a quiet spell the window that first reaches the newest matches is as wide as
        the spell and reads every session in it: 1,200 to return 50 after ten quiet hours
        at one session every 6 s, on every request while the quiet lasts. So the store
        remembers, per sort field and filter, the newest match a page found (a landmark;
        for a filter not seen yet, the newest of any): the window that holds it reaches
        one first window below it, and the next ones double from there. A landmark only
        moves window edges, never the windows' union, so a stale one (its sessions shred,
        newer ones since, another API process) costs a window or two, not a wrong page.
        """
        order = [(field, -1), ("session_id", -1)]
        rest = {k: v for k, v in query.items() if k != field}
        lowest, below = query.get(field, {}).get("$gte"), query.get(field, {}).get("$lt")
        docs: list[Doc] = []
        if after is not None:
            value, last_id = after
            if (lowest is None or lowest <= value) and (below is None or value < below):
                ties = {field: value, **rest, "session_id": {"$lt": last_id}}
                docs = self._page(ties, order, limit, shown)
            below = value if below is None else min(below, value)
        if _live_only(rest.get("state")):
            if len(docs) < limit:
                bounds = _range(lowest, below)
                live = {"state": rest["state"], **rest, **({field: bounds} if bounds else {})}
                docs += self._page(live, order, limit - len(docs), shown)
            return docs
        now = datetime.now(UTC)
        top = now if below is None else datetime.fromisoformat(below)
        key = repr(sorted(rest.items()))
        landmark = self._landmarks.get(field, key) if top.tzinfo is not None else None
        width, ceiling = _FIRST_WINDOW, top  # `ceiling`: `below` (or now) as a datetime
        while len(docs) < limit:
            start = _before(top, width)
            if landmark and start and top - width < landmark < ceiling:
                # The newest matches were last seen inside this window: after a quiet
                # spell, a window doubled from `top` would read as many sessions below
                # them as the spell is long. Reach one first window below the landmark,
                # and double from there.
                top, width, landmark = landmark, _FIRST_WINDOW, None
                start = _before(top, width)
            last = start is None or width > _LAST_WINDOW or (lowest is not None and start <= lowest)
            if last:
                start = lowest
            window = {field: _range(start, below), **rest}
            docs += self._page(window, order, limit - len(docs), shown)
            if last:
                break
            below, ceiling, width = start, top - width, width * _GROWTH
        self._landmarks.saw(field, key, docs, now)
        return docs

    @cached_property
    def _landmarks(self) -> _Landmarks:
        return _Landmarks()

    def _page(self, query: Doc, sort: list[tuple[str, int]], limit: int, shown: Doc) -> list[Doc]:
        return list(self.sessions.find(query, {**NO_ID, **shown}).sort(sort).limit(limit))
