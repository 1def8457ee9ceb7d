"""Admission: at most MAX_CONCURRENT_SESSIONS live sessions in the whole deployment.

A session is live from CREATED until it is sealed or fails (STOPPING included: its chunks
still occupy the pipeline). The check is a count before the insert, so two creates racing
at the limit may both pass: the limit is a guard against overload, not an exact quota.
"""

from __future__ import annotations

from lucid.errors import TooManySessions
from lucid.lifecycle.states import LIVE_STATES
from lucid.runtime import Runtime

__all__ = ["LIVE_STATES", "RETRY_AFTER_S", "check_capacity", "live_sessions"]

# What a 429 tells the client to wait: long enough for a short recording to end.
RETRY_AFTER_S = 30


def live_sessions(rt: Runtime) -> int:
    """How many sessions are live now."""
    return rt.meta.count_sessions(LIVE_STATES)


def check_capacity(rt: Runtime) -> None:
    """Raise TooManySessions (429, Retry-After) if a new session would pass the limit."""
    limit = rt.settings.max_concurrent_sessions
    live = live_sessions(rt)
    if live >= limit:
        raise TooManySessions(
            f"MAX_CONCURRENT_SESSIONS={limit} sessions are live; retry in {RETRY_AFTER_S} s",
            retry_after=RETRY_AFTER_S,
        )
