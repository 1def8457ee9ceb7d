"""Multi-host tests: hosts are network namespaces this run makes (tests/multihost/netns.py).

They need root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2; elsewhere they skip, saying
why."""

from __future__ import annotations

import pytest

from tests.multihost import netns


@pytest.fixture(scope="session")
def netns_ok() -> None:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"network namespaces cannot be made here: {reason}")
