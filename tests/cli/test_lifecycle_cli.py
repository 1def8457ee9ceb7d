"""`lucid list`, `lucid start|pause|resume|stop|delete ID` and `lucid stats [ID]` against a
real API (gunicorn on the test session's redis-server and SecantusDB; no workers needed),
run as a user runs them; failures are one `error:` line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.client import Client
from tests.cli.test_cli_errors import SID, assert_one_error_line, clean_env, lucid
from tests.integration.apiserver import admin_headers, running_api


@pytest.fixture(scope="module")
def api(
    redis_url: str, mongodb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {"REDIS_URL": redis_url, "MONGODB_URL": mongodb_url, "MONGODB_DATABASE": "lucid_cli"}
    data_dir = tmp_path_factory.mktemp("api")
    with running_api(data_dir, env) as url:
        # Every command below finds the token where a user's shell would have it.
        _TOKEN["value"] = admin_headers(data_dir, env)["Authorization"].removeprefix("Bearer ")
        yield url


_TOKEN: dict[str, str] = {}


def _env() -> dict[str, str]:
    return clean_env(LUCID_TOKEN=_TOKEN["value"])


def _client(api: str) -> Client:
    return Client(api, token=_TOKEN["value"])


def run(api: str, *args: str) -> dict[str, Any]:
    result = lucid(*args, "--json", "--api", api, env=_env())
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_a_session_is_driven_through_its_life_from_the_command_line(api: str) -> None:
    sid = _client(api).create({"filename": "cli.rec"})["session_id"]
    assert run(api, "start", sid)["state"] == "ACTIVE"
    assert run(api, "pause", sid)["state"] == "PAUSED"
    assert run(api, "resume", sid)["state"] == "ACTIVE"
    assert run(api, "stop", sid)["state"] in ("STOPPING", "STOPPED")
    listed = run(api, "list", "--state", "STOPPING", "--limit", "5", "--total")
    assert sid in [s["session_id"] for s in listed["sessions"]]
    assert listed["total"] >= 1
    assert "total" not in run(api, "list", "--limit", "1")
    stats = run(api, "stats", sid)
    assert stats["session_id"] == sid and stats["chunks"] == 1  # the empty final chunk
    system = run(api, "stats")
    assert system["sessions"]["STOPPING"] >= 1
    tomb = run(api, "delete", sid)
    assert tomb["state"] == "DESTROYED" and tomb["destroyed_by"]
    plain = lucid("list", "--api", api, env=_env())
    assert plain.returncode == 0 and "sessions shown" in plain.stderr
    counted = lucid("list", "--total", "--api", api, env=_env())
    assert counted.returncode == 0 and " of " in counted.stderr


def test_lifecycle_commands_fail_with_one_error_line(api: str) -> None:
    assert_one_error_line(lucid("delete", SID, "--api", api, env=_env()), "404")
    sid = _client(api).create()["session_id"]
    assert_one_error_line(lucid("pause", sid, "--api", api, env=_env()), "409", "PAUSE")
    assert_one_error_line(
        lucid("list", "--state", "NOPE", "--api", api, env=_env()), "400", "state"
    )
    _client(api).update(sid, {"legal_hold": True})
    assert_one_error_line(lucid("delete", sid, "--api", api, env=_env()), "409", "legal hold")


def test_lifecycle_commands_without_a_stack_say_so(tmp_path: Path) -> None:
    down = "http://127.0.0.1:9"
    for args in (["list"], ["stop", SID], ["stats"]):
        assert_one_error_line(lucid(*args, "--api", down), "cannot reach the Lucid API")
