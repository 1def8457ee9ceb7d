"""End of life: retention (per tenant, never under legal hold), abandoned sessions, the
sweep that applies both, and the limit on live sessions."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from lucid.errors import Conflict, InvalidInput, TooManySessions
from lucid.lifecycle.limits import check_capacity, live_sessions
from lucid.lifecycle.retention import SWEEPER, abandoned_sessions, expired_sessions, sweep
from lucid.lifecycle.states import SessionState, Trigger
from lucid.pipeline import sessions, stages
from lucid.runtime import Runtime
from tests.lucid.conftest import CHUNK, MakeRuntime, compressible, push_chunks, sealed_session

PATHS = {
    SessionState.CREATED: [],
    SessionState.ACTIVE: [Trigger.START, Trigger.START_COMPLETE],
    SessionState.PAUSED: [Trigger.START, Trigger.START_COMPLETE, Trigger.PAUSE,
                          Trigger.PAUSE_COMPLETE],
    SessionState.STOPPING: [Trigger.START, Trigger.START_COMPLETE, Trigger.STOP],
    SessionState.STOPPED: [Trigger.START, Trigger.START_COMPLETE, Trigger.STOP,
                           Trigger.STOP_COMPLETE],
    SessionState.ERROR: [Trigger.START, Trigger.ERROR],
}  # fmt: skip


def session_in(
    rt: Runtime, state: SessionState, tenant: str | None = None, held: bool = False
) -> str:
    """A metadata-only session walked to `state` through the state machine."""
    sid = uuid.uuid4().hex
    rt.meta.create_session(sid, {} if tenant is None else {"tenant": tenant})
    for trigger in PATHS[state]:
        rt.meta.apply_trigger(sid, trigger)
    if held:
        rt.meta.set_legal_hold(sid, True, by="counsel")
    return sid


def ids(docs: list[dict[str, object]]) -> set[object]:
    return {d["session_id"] for d in docs}


def later(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def test_expired_sessions_follow_each_tenants_retention_and_skip_legal_hold(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(RETENTION_DAYS="30", RETENTION_DAYS_BY_TENANT="acme=90,beta=7")
    legacy = session_in(rt, SessionState.STOPPED)
    acme = session_in(rt, SessionState.STOPPED, "acme")
    beta = session_in(rt, SessionState.STOPPED, "beta")
    gamma_failed = session_in(rt, SessionState.ERROR, "gamma")
    held = session_in(rt, SessionState.STOPPED, "beta", held=True)
    live = session_in(rt, SessionState.ACTIVE, "beta")
    stopping = session_in(rt, SessionState.STOPPING)

    assert ids(expired_sessions(rt, later(days=6))) == set()
    assert ids(expired_sessions(rt, later(days=8))) == {beta}
    assert ids(expired_sessions(rt, later(days=31))) == {beta, legacy, gamma_failed}
    assert ids(expired_sessions(rt, later(days=91))) == {beta, legacy, gamma_failed, acme}
    assert {held, live, stopping}.isdisjoint(ids(expired_sessions(rt, later(days=9999))))


def test_an_override_for_the_default_tenant_covers_sessions_without_a_tenant(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(RETENTION_DAYS_BY_TENANT="default=3")
    legacy = session_in(rt, SessionState.STOPPED)
    named = session_in(rt, SessionState.STOPPED, "default")
    other = session_in(rt, SessionState.STOPPED, "acme")
    assert ids(expired_sessions(rt, later(days=4))) == {legacy, named}
    assert ids(expired_sessions(rt, later(days=31))) == {legacy, named, other}


def test_expired_sessions_come_oldest_first_up_to_the_limit(rt: Runtime) -> None:
    first = session_in(rt, SessionState.STOPPED, "a")
    second = session_in(rt, SessionState.STOPPED)
    session_in(rt, SessionState.STOPPED, "b")
    found = expired_sessions(rt, later(days=31), limit=2)
    assert [d["session_id"] for d in found] == [first, second]


def test_abandoned_sessions_are_the_idle_created_active_and_paused_ones(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(ABANDONED_AFTER_H="24")
    idle = {session_in(rt, s) for s in (SessionState.CREATED, SessionState.ACTIVE,
                                         SessionState.PAUSED)}  # fmt: skip
    for state in (SessionState.STOPPING, SessionState.STOPPED, SessionState.ERROR):
        session_in(rt, state)
    assert abandoned_sessions(rt, later(hours=23)) == []
    assert ids(abandoned_sessions(rt, later(hours=25))) == idle


def test_now_must_carry_a_time_zone(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match="aware"):
        expired_sessions(rt, datetime.now())


def stop_and_seal(rt: Runtime) -> Callable[[str], object]:
    """What the Celery side does for an abandoned session: stop, push, seal."""

    def stop(session_id: str) -> object:
        sessions.stop(rt, session_id)
        return stages.seal_session(rt, session_id, push_chunks(rt, session_id))

    return stop


def test_sweep_seals_abandoned_recordings_and_later_shreds_them(rt: Runtime) -> None:
    active = sessions.create_session(rt, {})["session_id"]
    sessions.start(rt, active)
    data = compressible(CHUNK + 300)
    sessions.append(rt, active, io.BytesIO(data), lambda s, i, f: None, offset=0)
    paused = sessions.create_session(rt, {})["session_id"]
    sessions.start(rt, paused)
    sessions.pause(rt, paused)
    created = sessions.create_session(rt, {})["session_id"]
    created_held = sessions.create_session(rt, {})["session_id"]
    rt.meta.set_legal_hold(created_held, True, by="counsel")

    report = sweep(rt, later(hours=25), stop_and_seal(rt))

    assert sorted(report.stopped) == sorted([active, paused])
    assert report.shredded == [created]
    assert report.skipped == {created_held: "on legal hold"}
    assert report.failed == {}
    sealed = rt.meta.get_session(active)
    assert sealed["state"] == SessionState.STOPPED
    assert (sealed["tree_size"], sealed["bytes_received"]) == (2, len(data))
    assert rt.meta.get_session(created)["state"] == SessionState.DESTROYED
    assert rt.meta.get_session(created)["destroyed_by"] == SWEEPER

    # A month on, the sealed recordings are past retention; the held one stays.
    report = sweep(rt, later(days=31), stop_and_seal(rt))
    assert sorted(report.shredded) == sorted([active, paused])
    assert rt.meta.get_session(active)["state"] == SessionState.DESTROYED
    assert list(rt.blobs.keys(f"sessions/{active}/")) == []
    assert rt.meta.get_session(created_held)["state"] == SessionState.CREATED


def test_sweep_reports_a_failing_session_and_goes_on(rt: Runtime) -> None:
    broken = session_in(rt, SessionState.ACTIVE)
    expired = sealed_session(rt, compressible(CHUNK))

    def refuse(session_id: str) -> object:
        raise Conflict(f"cannot stop {session_id}")

    report = sweep(rt, later(days=31), refuse)
    assert list(report.failed) == [broken]
    assert "conflict" in report.failed[broken]
    assert report.shredded == [expired]


def test_capacity_counts_live_sessions_and_answers_retry_after(
    make_runtime: MakeRuntime,
) -> None:
    rt = make_runtime(MAX_CONCURRENT_SESSIONS="2")
    first = session_in(rt, SessionState.ACTIVE)
    session_in(rt, SessionState.STOPPING)
    session_in(rt, SessionState.STOPPED)
    session_in(rt, SessionState.ERROR)
    assert live_sessions(rt) == 2
    with pytest.raises(TooManySessions, match="MAX_CONCURRENT_SESSIONS=2") as caught:
        check_capacity(rt)
    assert caught.value.retry_after == 30
    rt.meta.apply_trigger(first, Trigger.ERROR)
    check_capacity(rt)
