"""Keep the processes of `lucid up` / `lucid workers` running, and stop them all on a
signal: a child that exits is restarted with backoff; one that keeps dying is given up on
with one clear message naming it and its log file."""

from __future__ import annotations

import contextlib
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

from cli.servers import ManagedProcess

__all__ = ["StopRequested", "Supervisor", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):
    """A stop signal arrived (SIGHUP: the terminal or SSH session went away)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], None]]:
    """Turn the first SIGHUP, SIGINT or SIGTERM into `StopRequested` in the main thread.

    Yields `disarm`: call it before stopping the children, so a second signal (a second
    Ctrl-C, systemd repeating SIGTERM) cannot interrupt the stop half-way."""
    armed = True

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal armed
        if armed:
            armed = False
            raise StopRequested(signum)

    def disarm() -> None:
        nonlocal armed
        armed = False

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield disarm
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class _Record:
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    gave_up: bool = False


class Supervisor:
    """Restarts exited children in `procs` (the list is updated in place, so whoever stops
    the list stops the restarted processes too).

    A child is restarted after 1, 2, 4 … `max_backoff` seconds, the delay growing with its
    exits inside `window`. After `max_deaths` exits inside `window` it is given up on. For
    a name in `essential` (nothing works without it) `poll` then returns that name so the
    caller stops everything; any other child (a worker group, Flower) stays down while the
    rest keeps running: uploads are still accepted and its queue waits in Redis for it.
    """

    def __init__(
        self,
        procs: list[ManagedProcess],
        say: Callable[[str], None],
        *,
        essential: frozenset[str] = frozenset(),
        max_deaths: int = 5,
        window: float = 120.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.procs = procs
        self.say = say
        self.essential = essential
        self.max_deaths = max_deaths
        self.window = window
        self.max_backoff = max_backoff
        self._records: dict[str, _Record] = {}

    def poll(self, now: float | None = None) -> str | None:
        """Note exits, restart what is due; the name of an essential child given up on."""
        now = time.monotonic() if now is None else now
        for i, proc in enumerate(self.procs):
            record = self._records.setdefault(proc.name, _Record())
            if record.gave_up or proc.alive():
                continue
            if record.restart_at is None:
                if self._note_exit(proc, record, now):
                    return proc.name
            elif now >= record.restart_at:
                record.restart_at = None
                self.procs[i] = proc.respawn()
                self.say(f"{proc.name} restarted (pid {self.procs[i].popen.pid})")
        return None

    def all_given_up(self) -> bool:
        """True once every child has been given up on (nothing left to supervise)."""
        return all(self._records.get(p.name, _Record()).gave_up for p in self.procs)

    def _note_exit(self, proc: ManagedProcess, record: _Record, now: float) -> bool:
        record.deaths.append(now)
        while record.deaths and record.deaths[0] < now - self.window:
            record.deaths.popleft()
        code = proc.popen.returncode
        if len(record.deaths) >= self.max_deaths:
            record.gave_up = True
            proc.stop()
            fatal = proc.name in self.essential
            self.say(
                f"{proc.name} keeps dying ({len(record.deaths)} exits in "
                f"{self.window:.0f}s, last exit code {code}); not restarting it; "
                f"see {proc.log_path}; "
                + ("stopping the stack" if fatal else "the rest keeps running")
            )
            return fatal
        delay = min(self.max_backoff, 2.0 ** (len(record.deaths) - 1))
        record.restart_at = now + delay
        self.say(
            f"{proc.name} exited (code {code}); restarting in {delay:.0f}s; see {proc.log_path}"
        )
        return False
