"""The reason a failed task stores on its session names the error, never a server path."""

from __future__ import annotations

from pathlib import Path

import pytest

import lucid.runtime
from lucid.pipeline import sessions
from lucid.runtime import Runtime
from lucid.settings import load_settings
from tasks.pipeline import compress, mark_error


@pytest.fixture
def rt(mongodb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """The process runtime (what tasks use) on a fresh database of the session's server."""
    settings = load_settings(
        {
            "MONGODB_URL": mongodb_url,
            "MONGODB_DATABASE": f"t_reasons_{tmp_path.name[-20:]}",
            "LUCID_DATA_DIR": str(tmp_path / "data"),
        }
    )
    runtime = Runtime(settings)
    monkeypatch.setattr(lucid.runtime, "_runtime", runtime)
    return runtime


def test_failed_task_stores_its_reason_without_server_paths(rt: Runtime, tmp_path: Path) -> None:
    sid = sessions.create_session(rt)["session_id"]
    where = str(tmp_path / "data" / "blobs" / "enc" / sid / "00000003")
    exc = IsADirectoryError(21, "Is a directory", where)

    compress.on_failure(exc, "task-1", (sid, 3, False), {}, None)

    doc = rt.meta.get_session(sid)
    assert doc["state"] == "ERROR"
    for reason in (doc["error"], doc["history"][-1]["reason"]):
        assert reason.startswith("compress failed: IsADirectoryError: [Errno 21] Is a directory")
        assert "…/00000003" in reason
        assert str(tmp_path) not in reason, reason


def test_mark_error_redacts_any_reason_it_is_given(rt: Runtime) -> None:
    sid = sessions.create_session(rt)["session_id"]
    mark_error(sid, "merkle failed: OSError: [Errno 28] No space left on device: '/srv/x/y'")
    assert rt.meta.get_session(sid)["error"] == (
        "merkle failed: OSError: [Errno 28] No space left on device: '…/y'"
    )
