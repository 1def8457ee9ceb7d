"""GET /api/v1/sessions on the real stack: the total (only when asked), filters (state,
times, labels), sort, cursor; an unknown query parameter is a 400 naming it."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

from cli.client import Client
from tests.integration.test_lifecycle_api import SESSIONS


def _labelled(client: Client, run: str, n: int) -> list[str]:
    return [client.create({"labels": {"run": run, "n": str(i)}})["session_id"] for i in range(n)]


def test_label_filter_total_and_cursor_walk_every_session_once_in_order(client: Client) -> None:
    run = uuid.uuid4().hex
    ids = _labelled(client, run, 5)
    seen: list[str] = []
    page = client.list_sessions(label=f"run:{run}", limit="2", sort="created_at", total="true")
    pages = 1
    while True:
        assert page["total"] == 5 and page["limit"] == 2
        seen += [s["session_id"] for s in page["sessions"]]
        if page["next"] is None:
            break
        query = parse_qs(urlsplit(page["next"]).query)
        assert query["label"] == [f"run:{run}"] and query["sort"] == ["created_at"]
        assert query["total"] == ["true"]
        page = client.list_sessions(**{k: v[0] for k, v in query.items()})
        pages += 1
    assert seen == ids and pages == 3
    newest_first = client.list_sessions(label=f"run:{run}")["sessions"]
    assert [s["session_id"] for s in newest_first] == ids[::-1]


def test_state_time_and_label_filters(client: Client) -> None:
    run = uuid.uuid4().hex
    ids = _labelled(client, run, 3)
    client.start(ids[1])
    active = client.list_sessions(label=f"run:{run}", state="ACTIVE", total="true")
    assert [s["session_id"] for s in active["sessions"]] == [ids[1]] and active["total"] == 1
    both = client.list_sessions(label=f"run:{run}", state="ACTIVE,CREATED", total="true")
    assert both["total"] == 3
    one = client.http.get(f"{SESSIONS}?label=run:{run}&label=n:2&total=true").json()
    assert one["total"] == 1 and one["sessions"][0]["session_id"] == ids[2]
    third = client.status(ids[2])
    later = client.list_sessions(label=f"run:{run}", created_after=third["created_at"])
    assert [s["session_id"] for s in later["sessions"]] == [ids[2]]
    earlier = client.list_sessions(
        label=f"run:{run}", created_before=third["created_at"], total="true"
    )
    assert earlier["total"] == 2
    touched = client.list_sessions(label=f"run:{run}", sort="-updated_at", limit="1")
    assert touched["sessions"][0]["session_id"] == ids[1]  # started last
    future = client.list_sessions(label=f"run:{run}", updated_after="2999-01-01", total="true")
    assert future["total"] == 0
    exists = client.http.get(f"{SESSIONS}?label=run:{run}&label=n&total=true").json()
    assert exists["total"] == 3


def test_total_only_when_asked(client: Client) -> None:
    run = uuid.uuid4().hex
    _labelled(client, run, 3)
    page = client.list_sessions(label=f"run:{run}", limit="2")
    assert "total" not in page and page["next"] is not None and len(page["sessions"]) == 2
    assert client.list_sessions(label=f"run:{run}", total="false").keys() == page.keys()
    response = client.http.get(SESSIONS, params={"total": "maybe"})
    assert response.status_code == 400
    assert "total" in response.json()["message"]


def test_unknown_query_parameters_are_400_naming_them(client: Client) -> None:
    response = client.http.get(SESSIONS, params={"colour": "red", "skip": "1", "limit": "2"})
    assert response.status_code == 400
    assert "unknown query parameters colour, skip" in response.json()["message"]


def test_bad_filter_values_are_400(client: Client) -> None:
    for params, named in (
        ({"state": "RUNNING"}, "state"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"sort": "size"}, "sort"),
        ({"cursor": "!!"}, "cursor"),
        ({"label": "a.b:c"}, "label"),
        ({"total": "yes"}, "total"),
    ):
        response = client.http.get(SESSIONS, params=params)
        assert response.status_code == 400, params
        assert named in response.json()["message"]
