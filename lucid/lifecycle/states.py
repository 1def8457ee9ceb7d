"""The session lifecycle state machine (seed 003, "State Machine Design") and chunk stages.

The table is the seed's, plus one addition: PAUSED --STOP--> STOPPING, because stopping a
paused recording is what users expect and forcing a RESUME first would accept new data
for a moment. "Any state" rows follow the seed literally: ERROR is allowed from every
state except CLEANUP and DESTROYED (so a second failure on an ERROR session is recorded),
and CLEANUP from every state except DESTROYED (so a cleanup can be retried).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

from lucid.errors import InvalidInput, InvalidTransition

__all__ = [
    "LIVE_STATES",
    "TRANSITIONS",
    "ChunkStage",
    "SessionState",
    "Transition",
    "Trigger",
    "allowed_triggers",
    "next_state",
]


class SessionState(StrEnum):
    """Where a session is in its lifecycle; stored by name in the metadata store."""

    CREATED = "CREATED"
    STARTING = "STARTING"
    ACTIVE = "ACTIVE"
    PAUSING = "PAUSING"
    PAUSED = "PAUSED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"
    CLEANUP = "CLEANUP"
    DESTROYED = "DESTROYED"


# Live from CREATED until sealed or failed (STOPPING included: its chunks still occupy
# the pipeline). Admission (lucid.lifecycle.limits) keeps at most MAX_CONCURRENT_SESSIONS
# of them, so they stay few however many sessions the store holds.
LIVE_STATES = [
    SessionState.CREATED,
    SessionState.STARTING,
    SessionState.ACTIVE,
    SessionState.PAUSING,
    SessionState.PAUSED,
    SessionState.STOPPING,
]


class Trigger(StrEnum):
    """An event that may move a session to another state."""

    START = "START"
    START_COMPLETE = "START_COMPLETE"
    PAUSE = "PAUSE"
    PAUSE_COMPLETE = "PAUSE_COMPLETE"
    RESUME = "RESUME"
    STOP = "STOP"
    STOP_COMPLETE = "STOP_COMPLETE"
    ERROR = "ERROR"
    RECOVER = "RECOVER"
    CLEANUP = "CLEANUP"
    CLEANUP_COMPLETE = "CLEANUP_COMPLETE"
    DESTROY = "DESTROY"


class ChunkStage(IntEnum):
    """How far one chunk has got through the pipeline; only ever moves forward."""

    RECEIVED = 0
    COMPRESSED = 1
    ENCRYPTED = 2
    HASHED = 3


def _build_table() -> dict[tuple[SessionState, Trigger], SessionState]:
    s, t = SessionState, Trigger
    table = {
        (s.CREATED, t.START): s.STARTING,
        (s.STARTING, t.START_COMPLETE): s.ACTIVE,
        (s.ACTIVE, t.PAUSE): s.PAUSING,
        (s.PAUSING, t.PAUSE_COMPLETE): s.PAUSED,
        (s.PAUSED, t.RESUME): s.ACTIVE,
        (s.ACTIVE, t.STOP): s.STOPPING,
        (s.PAUSED, t.STOP): s.STOPPING,  # not in the seed; see the module docstring
        (s.STOPPING, t.STOP_COMPLETE): s.STOPPED,
        (s.ERROR, t.RECOVER): s.ACTIVE,
        (s.CLEANUP, t.CLEANUP_COMPLETE): s.DESTROYED,
        (s.CREATED, t.DESTROY): s.DESTROYED,
    }
    for state in s:
        if state not in (s.DESTROYED, s.CLEANUP):
            table[(state, t.ERROR)] = s.ERROR
        if state is not s.DESTROYED:
            table[(state, t.CLEANUP)] = s.CLEANUP
    return table


TRANSITIONS: dict[tuple[SessionState, Trigger], SessionState] = _build_table()
# Table order puts a state's own moves before the ERROR and CLEANUP escapes.
_ALLOWED: dict[SessionState, tuple[Trigger, ...]] = {
    state: tuple(t for (s, t) in TRANSITIONS if s is state) for state in SessionState
}


def allowed_triggers(state: SessionState) -> tuple[Trigger, ...]:
    """The triggers `state` accepts: its own moves first, then ERROR and CLEANUP."""
    return _ALLOWED[SessionState(state)]


def next_state(current: SessionState, trigger: Trigger) -> SessionState:
    """The state `trigger` moves `current` to, or InvalidTransition if it may not."""
    try:
        current, trigger = SessionState(current), Trigger(trigger)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    target = TRANSITIONS.get((current, trigger))
    if target is None:
        allowed = ", ".join(allowed_triggers(current)) or "none"
        raise InvalidTransition(
            f"cannot {trigger} a session in state {current}; allowed triggers: {allowed}"
        )
    return target


@dataclass(frozen=True)
class Transition:
    """One recorded state change, as stored in a session's history."""

    from_state: SessionState
    trigger: Trigger
    to_state: SessionState
    at: datetime
    reason: str | None = None
    # The subject of the token that asked for it; None when the system moved it itself.
    by: str | None = None

    def __post_init__(self) -> None:
        if self.at.utcoffset() != timedelta(0):
            raise InvalidInput(f"transition time must be UTC, got {self.at!r}")

    @classmethod
    def now(
        cls,
        from_state: SessionState,
        trigger: Trigger,
        reason: str | None = None,
        by: str | None = None,
    ) -> Transition:
        """The transition `trigger` makes from `from_state`, stamped with the current time."""
        to_state = next_state(from_state, trigger)
        return cls(from_state, trigger, to_state, datetime.now(UTC), reason, by)

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and BSON-friendly form: names for the enums, ISO 8601 for the time."""
        return {
            "from_state": str(self.from_state),
            "trigger": str(self.trigger),
            "to_state": str(self.to_state),
            # Fixed precision keeps the strings sortable in time order.
            "at": self.at.isoformat(timespec="microseconds"),
            "reason": self.reason,
            "by": self.by,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transition:
        """The inverse of `to_dict`."""
        return cls(
            SessionState(data["from_state"]),
            Trigger(data["trigger"]),
            SessionState(data["to_state"]),
            datetime.fromisoformat(data["at"]),
            data.get("reason"),
            data.get("by"),
        )
