"""GET /api/v1/sessions: filters, a sort, a cursor to the next page and, when asked, a total.

Query parameters (any other is refused with 400 naming it):

* `state=S` (repeatable, or comma-separated) — sessions in any of those states;
* `created_after`, `created_before`, `updated_after`, `updated_before` — ISO 8601 times
  (a time without a zone is UTC); after is inclusive, before exclusive;
* `label=key:value` (repeatable) — `metadata.labels.key` equals `value`; `label=key`:
  the label is present;
* `sort` — `created_at`, `-created_at` (default, newest first), `updated_at`, `-updated_at`;
* `limit` (1..1000, default 50); `cursor` — from the previous page's `next`;
* `total=true` — add `total`: how many match the filters, whatever the page. It costs a
  count of every match (seconds with 100,000 sessions), so it is opt-in, like Stripe's;
  without it (or with `total=false`) the answer has no `total` key.

The answer: `sessions`, `limit`, `next` (the link to the following page, or null) and,
when asked, `total`. The cursor is keyset pagination on (sort field, session id), so a
page never repeats or skips a session when new ones arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from api import runtime, validation
from api.auth import principal
from lucid.crypto.tokens import DEFAULT_TENANT
from lucid.errors import InvalidInput
from lucid.lifecycle.states import SessionState

__all__ = ["PARAMETERS", "SORTS", "Listing", "list_sessions", "parse_query"]

PARAMETERS = (
    "state", "created_after", "created_before", "updated_after", "updated_before", "label",
    "sort", "limit", "cursor", "total",
)  # fmt: skip
SORTS = ("created_at", "-created_at", "updated_at", "-updated_at")
Doc = dict[str, Any]


def _time(name: str, raw: str) -> str:
    """An ISO 8601 time in the store's format (UTC, microseconds): sortable as text."""
    try:
        moment = datetime.fromisoformat(raw)
        if moment.utcoffset() is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset
        raise InvalidInput(f"{name}: expected an ISO 8601 time, got {raw[:40]!r}") from None


def _states(values: list[str]) -> list[str]:
    states = [s.strip() for value in values for s in value.split(",") if s.strip()]
    unknown = [s for s in states if s not in SessionState.__members__]
    if unknown:
        raise InvalidInput(
            f"state: expected some of {', '.join(SessionState)}, got {', '.join(unknown)}"
        )
    return states


def _label(raw: str) -> tuple[str, Any]:
    key, sep, value = raw.partition(":")
    if not key or "." in key or key.startswith("$") or "\x00" in key:
        raise InvalidInput(f"label: expected key:value or key (no '.', '$'), got {raw[:40]!r}")
    return f"metadata.labels.{key}", value if sep else {"$exists": True}


def _encode_cursor(sort: str, doc: Doc) -> str:
    field = sort.lstrip("-")
    raw = json.dumps([sort, doc.get(field), doc["session_id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(raw: str, sort: str) -> tuple[str, str]:
    """The (sort value, session id) a page ended at, from its `next` cursor."""
    try:
        padded = raw + "=" * (-len(raw) % 4)
        cursor_sort, value, last_id = json.loads(base64.urlsafe_b64decode(padded))
        datetime.fromisoformat(value)  # the store reads windows back from it
    except (binascii.Error, ValueError, TypeError):
        raise InvalidInput(
            f"cursor: expected the `next` of a previous page, got {raw[:40]!r}"
        ) from None
    if cursor_sort != sort or not isinstance(last_id, str):
        raise InvalidInput(f"cursor: it was made for sort={cursor_sort}, not sort={sort}")
    return value, last_id


def _flag(name: str, raw: str | None) -> bool:
    if raw not in (None, "true", "false"):
        raise InvalidInput(f"{name}: expected true or false, got {raw[:40]!r}")
    return raw == "true"


class Listing(NamedTuple):
    """What a list request asks the store for."""

    query: Doc
    order: list[tuple[str, int]]
    limit: int
    sort: str
    after: tuple[str, str] | None
    total: bool


def parse_query(args: Any, tenant: str) -> Listing:
    """The store query, sort, page size, cursor and total that `args` ask for (400 if bad)."""
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        raise InvalidInput(
            f"unknown query parameters {', '.join(unknown)}; expected some of "
            f"{', '.join(PARAMETERS)}"
        )
    # Sessions from before tenants belong to the default tenant.
    owner = {"$in": [tenant, None]} if tenant == DEFAULT_TENANT else tenant
    query: Doc = {"tenant": owner}
    if args.getlist("state"):
        query["state"] = {"$in": _states(args.getlist("state"))}
    for field in ("created", "updated"):
        bounds: Doc = {}
        if (after := args.get(f"{field}_after")) is not None:
            bounds["$gte"] = _time(f"{field}_after", after)
        if (before := args.get(f"{field}_before")) is not None:
            bounds["$lt"] = _time(f"{field}_before", before)
        if bounds:
            query[f"{field}_at"] = bounds
    for raw in args.getlist("label"):
        path, condition = _label(raw)
        query[path] = condition
    sort = args.get("sort", "-created_at")
    if sort not in SORTS:
        raise InvalidInput(f"sort: expected one of {', '.join(SORTS)}, got {sort[:40]!r}")
    limit = validation.decimal("limit", args.get("limit"), 50, 1, 1000)
    cursor = args.get("cursor")
    after = None if cursor is None else _decode_cursor(cursor, sort)
    direction = -1 if sort.startswith("-") else 1
    order = [(sort.lstrip("-"), direction), ("session_id", direction)]
    return Listing(query, order, limit, sort, after, _flag("total", args.get("total")))


def list_sessions(render: Callable[[Doc], Doc], fields: Collection[str]) -> ResponseReturnValue:
    """The list view: the page of sessions `request.args` ask for, each through `render`
    (which reads only `fields` of a session)."""
    ask = parse_query(request.args, principal().tenant)
    # One more than the page tells whether another page follows.
    docs, total = runtime().meta.query_sessions(
        ask.query, ask.order, limit=ask.limit + 1, after=ask.after, total=ask.total, fields=fields
    )
    page = docs[: ask.limit]
    link = None
    if len(docs) > ask.limit:
        params = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
        params.append(("cursor", _encode_cursor(ask.sort, page[-1])))
        link = f"{request.path}?{urlencode(params)}"
    counted = {} if total is None else {"total": total}
    return jsonify(
        {"sessions": [render(d) for d in page], **counted, "limit": ask.limit, "next": link}
    )
