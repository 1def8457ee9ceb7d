from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lucid.errors import InvalidInput, InvalidTransition
from lucid.lifecycle.states import (
    ChunkStage,
    SessionState,
    Transition,
    Trigger,
    allowed_triggers,
    next_state,
)

S, T = SessionState, Trigger

# Written out by hand from the brief, independently of the module's table-building code.
EXPECTED: dict[tuple[SessionState, Trigger], SessionState] = {
    (S.CREATED, T.START): S.STARTING,
    (S.STARTING, T.START_COMPLETE): S.ACTIVE,
    (S.ACTIVE, T.PAUSE): S.PAUSING,
    (S.PAUSING, T.PAUSE_COMPLETE): S.PAUSED,
    (S.PAUSED, T.RESUME): S.ACTIVE,
    (S.ACTIVE, T.STOP): S.STOPPING,
    (S.PAUSED, T.STOP): S.STOPPING,
    (S.STOPPING, T.STOP_COMPLETE): S.STOPPED,
    (S.ERROR, T.RECOVER): S.ACTIVE,
    (S.CLEANUP, T.CLEANUP_COMPLETE): S.DESTROYED,
    (S.CREATED, T.DESTROY): S.DESTROYED,
    **{
        (state, T.ERROR): S.ERROR
        for state in (
            S.CREATED,
            S.STARTING,
            S.ACTIVE,
            S.PAUSING,
            S.PAUSED,
            S.STOPPING,
            S.STOPPED,
            S.ERROR,
        )
    },
    **{(state, T.CLEANUP): S.CLEANUP for state in S if state is not S.DESTROYED},
}


@pytest.mark.parametrize(("pair", "target"), list(EXPECTED.items()), ids=str)
def test_listed_transition(pair: tuple[SessionState, Trigger], target: SessionState) -> None:
    assert next_state(*pair) is target
    assert pair[1] in allowed_triggers(pair[0])


@pytest.mark.parametrize("pair", [p for p in itertools.product(S, T) if p not in EXPECTED], ids=str)
def test_every_other_pair_is_refused(pair: tuple[SessionState, Trigger]) -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(*pair)
    assert isinstance(info.value, ValueError)
    assert f"cannot {pair[1]} a session in state {pair[0]}" in str(info.value)
    assert pair[1] not in allowed_triggers(pair[0])


def test_refusal_lists_what_is_allowed() -> None:
    with pytest.raises(
        InvalidTransition,
        match=r"^cannot STOP a session in state CREATED; "
        r"allowed triggers: START, DESTROY, ERROR, CLEANUP$",
    ):
        next_state(S.CREATED, T.STOP)
    with pytest.raises(InvalidTransition, match=r"allowed triggers: none$"):
        next_state(S.DESTROYED, T.CLEANUP)


def test_state_and_trigger_names_are_accepted_but_unknown_names_are_not() -> None:
    assert next_state("ACTIVE", "PAUSE") is S.PAUSING  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        next_state(S.ACTIVE, "JUMP")  # type: ignore[arg-type]


def test_full_lifecycle_history() -> None:
    triggers = [
        T.START, T.START_COMPLETE, T.PAUSE, T.PAUSE_COMPLETE, T.RESUME, T.ERROR, T.RECOVER,
        T.PAUSE, T.PAUSE_COMPLETE, T.STOP, T.STOP_COMPLETE, T.CLEANUP, T.CLEANUP_COMPLETE,
    ]  # fmt: skip
    state, history = S.CREATED, []
    for trigger in triggers:
        step = Transition.now(state, trigger, reason=f"step {trigger}", by="alice")
        history.append(step)
        state = step.to_state
    assert state is S.DESTROYED
    assert [h.from_state for h in history[1:]] == [h.to_state for h in history[:-1]]
    assert [h.at for h in history] == sorted(h.at for h in history)
    as_dicts = [h.to_dict() for h in history]
    assert as_dicts[5] == {
        "from_state": "ACTIVE",
        "trigger": "ERROR",
        "to_state": "ERROR",
        "at": history[5].at.isoformat(timespec="microseconds"),
        "reason": "step ERROR",
        "by": "alice",
    }
    assert [Transition.from_dict(d) for d in as_dicts] == history
    assert allowed_triggers(state) == ()


def test_transition_time_must_be_utc() -> None:
    with pytest.raises(InvalidInput):
        Transition(S.CREATED, T.START, S.STARTING, datetime(2024, 1, 1))
    with pytest.raises(InvalidInput):
        Transition(S.CREATED, T.START, S.STARTING, datetime.now(timezone(timedelta(hours=2))))
    Transition(S.CREATED, T.START, S.STARTING, datetime.now(UTC))


def test_chunk_stages_are_ordered() -> None:
    assert [int(s) for s in ChunkStage] == [0, 1, 2, 3]
    assert ChunkStage.RECEIVED < ChunkStage.COMPRESSED < ChunkStage.ENCRYPTED < ChunkStage.HASHED
