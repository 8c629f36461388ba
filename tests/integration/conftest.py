"""Fixtures for integration tests: namespace hosts with sshd (see tests/hosts/netns.py and ../shared/TESTING.md).

The installer's tests use host indices 1..49 (10.231.1.0/24 - 10.231.49.0/24); the auditor's use 50 and up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts.netns import HostFleet, requirements_missing


@pytest.fixture(scope="session")
def host_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    """A session-wide fleet: tests add hosts by index; every host is torn down at the end, even on failure.

    A machine that cannot run namespace hosts fails the test (never skips): an integration suite that ran
    nothing has proven nothing.
    """
    missing = requirements_missing()
    if missing:
        pytest.fail(f"namespace hosts cannot run here, missing: {', '.join(missing)} (run scripts/system-deps.sh)")
    fleet = HostFleet(Path(tmp_path_factory.mktemp("hosts")))
    try:
        yield fleet
    finally:
        fleet.teardown()
