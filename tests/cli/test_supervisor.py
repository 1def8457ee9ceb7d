"""Children of `lucid up`: restarted with backoff when they exit, given up on loudly when
they keep dying, and gone when their parent is gone. Real processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from cli.servers import ManagedProcess, spawn
from cli.supervisor import Supervisor


def _dead(proc: ManagedProcess) -> ManagedProcess:
    proc.popen.wait(10)
    return proc


def test_an_exited_child_is_restarted_after_a_growing_backoff(tmp_path: Path) -> None:
    procs = [spawn("flaky", ["sh", "-c", "exit 3"], tmp_path)]
    said: list[str] = []
    supervisor = Supervisor(procs, said.append, max_deaths=10)
    first_pid = procs[0].popen.pid
    _dead(procs[0])

    assert supervisor.poll(now=100.0) is None  # noted; restart due at 101
    assert "flaky exited (code 3); restarting in 1s" in said[-1]
    assert str(tmp_path / "flaky.log") in said[-1]
    supervisor.poll(now=100.5)
    assert procs[0].popen.pid == first_pid  # not yet
    supervisor.poll(now=101.0)
    assert procs[0].popen.pid != first_pid
    assert "flaky restarted" in said[-1]

    _dead(procs[0])
    supervisor.poll(now=101.5)
    assert "restarting in 2s" in said[-1]


def test_a_child_that_keeps_dying_is_given_up_on_with_one_message(tmp_path: Path) -> None:
    procs = [
        spawn("api", ["sh", "-c", "exit 4"], tmp_path),
        spawn("worker-hash", ["sh", "-c", "exit 5"], tmp_path),
        spawn("steady", ["sleep", "30"], tmp_path),
    ]
    said: list[str] = []
    supervisor = Supervisor(procs, said.append, essential=frozenset({"api"}), max_deaths=3)
    try:
        now, fatal = 0.0, []
        while sum("keeps dying" in line for line in said) < 2 and now < 60:
            for proc in procs[:2]:
                if proc.popen.poll() is None:
                    _dead(proc)
            fatal.append(supervisor.poll(now=now))
            now += 1.0
        assert [name for name in fatal if name] == ["api"]  # only the essential one is fatal
        gave_up = [line for line in said if "keeps dying" in line]
        assert len(gave_up) == 2  # one each, both named with their logs
        api_line = next(line for line in gave_up if line.startswith("api"))
        worker_line = next(line for line in gave_up if line.startswith("worker-hash"))
        assert str(tmp_path / "api.log") in api_line and "stopping the stack" in api_line
        assert "the rest keeps running" in worker_line
        assert procs[2].alive()
        assert not supervisor.all_given_up()
        restarts = sum("restarted" in line for line in said)
        supervisor.poll(now=now + 100)
        assert sum("restarted" in line for line in said) == restarts  # no more tries
    finally:
        for proc in procs:
            proc.stop()


PARENT = """
import sys, time
from pathlib import Path
from cli.servers import spawn
child = spawn("sleeper", ["sleep", "60"], Path(sys.argv[1]))
print(child.popen.pid, flush=True)
time.sleep(60)
"""


def test_a_child_stops_itself_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        os.kill(parent.pid, signal.SIGKILL)  # no handler, no clean-up: only the kernel
        parent.wait(10)
        child.wait(10)  # raises psutil.TimeoutExpired while it lives on
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE
