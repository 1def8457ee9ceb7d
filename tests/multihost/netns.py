"""Several "hosts" on one machine: network namespaces joined through a switch namespace.

Each host is a namespace with its loopback and one veth link (eth0, 10.77.0.<n>/24) to a
bridge that lives in a namespace of its own, so nothing is added to the machine's own
network. Processes run inside a host with `ip netns exec`; a host's link can be cut and
restored. Everything is named `lucid-test-<pid>-...`: teardown kills every process in the
namespaces and deletes them, and `remove_stale()` deletes what a run that died left behind
(its pid no longer alive).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PREFIX = "lucid-test-"
SUBNET = "10.77.0"
_OWNED = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def namespaces() -> list[str]:
    """Names of the network namespaces on the machine."""
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (no `ip`, no privilege), or None if they can."""
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        made = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "`ip` (iproute2) is not installed"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    _ip("netns", "del", probe, check=False)
    return None


def _kill_all_in(ns: str) -> None:
    for _ in range(20):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def delete(ns: str) -> None:
    """Kill everything running in `ns` and delete it (its veth links go with it)."""
    _kill_all_in(ns)
    _ip("netns", "del", ns, check=False)


def remove_stale() -> list[str]:
    """Delete the lucid-test namespaces of runs whose process is gone; return their names."""
    removed = []
    for ns in namespaces():
        match = _OWNED.match(ns)
        if match is None or int(match[1]) == os.getpid():
            continue
        try:
            os.kill(int(match[1]), 0)
            continue
        except ProcessLookupError:
            pass
        delete(ns)
        removed.append(ns)
    return removed


@dataclass
class Host:
    """One namespace with one address on the shared network."""

    name: str
    ns: str
    address: str
    port: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(
        self, argv: Sequence[str], timeout: float = 30, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in this host to completion."""
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            self.argv(argv), capture_output=True, text=True, timeout=timeout, **kw
        )

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process in this host (its own process group)."""
        out: IO[bytes] | int = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            self.argv(argv),
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if log:
            out.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        """SIGKILL every process in this host, as a machine that loses power would."""
        for proc in self.procs:
            # its group too: one just spawned may not have entered the namespace yet
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        _kill_all_in(self.ns)
        for proc in self.procs:
            proc.wait(timeout=10)
        self.procs.clear()


class Network:
    """Hosts on one switch. Use as a context manager; teardown leaves no namespace."""

    def __init__(self, names: Sequence[str]) -> None:
        self.tag = f"{PREFIX}{os.getpid()}-{os.urandom(2).hex()}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._names = list(names)

    def __enter__(self) -> Network:
        remove_stale()
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for n, name in enumerate(self._names, start=1):
            host = Host(name, f"{self.tag}-{name}", f"{SUBNET}.{n}", f"p{n}")
            self.hosts[name] = host
            _ip("netns", "add", host.ns)
            _ip("-n", host.ns, "link", "set", "lo", "up")
            _ip("-n", self.switch, "link", "add", host.port, "type", "veth",
                "peer", "name", "eth0", "netns", host.ns)  # fmt: skip
            _ip("-n", self.switch, "link", "set", host.port, "master", "br0")
            _ip("-n", self.switch, "link", "set", host.port, "up")
            _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.ns, "link", "set", "eth0", "up")

    def cut(self, name: str) -> None:
        """Unplug a host's cable: its packets stop at the switch, its processes run on."""
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "down")

    def restore(self, name: str) -> None:
        """Plug it back in."""
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "up")

    def owned(self) -> list[str]:
        """The namespaces of this network that exist now."""
        return [ns for ns in namespaces() if ns.startswith(self.tag)]

    def teardown(self) -> None:
        """Kill every process in every host, then delete all the namespaces."""
        for host in self.hosts.values():
            host.kill_all()
        for ns in [*(h.ns for h in self.hosts.values()), self.switch]:
            delete(ns)
        for ns in self.owned():
            delete(ns)


@contextmanager
def network(names: Sequence[str]) -> Iterator[Network]:
    """A Network of the named hosts, torn down on the way out whatever happened."""
    with Network(names) as net:
        yield net


def wait_port(host: Host, address: str, port: int, timeout: float = 30.0) -> None:
    """Wait until `address:port` accepts a TCP connection as seen from `host`."""
    probe = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout(1)\n"
        f"sys.exit(s.connect_ex(({address!r}, {port})))\n"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run([sys.executable, "-c", probe], timeout=10).returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"expected {address}:{port} to answer from {host.name} within {timeout:g} s")
