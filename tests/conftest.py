"""Fixtures shared by the integration and e2e suites: real systemd hosts (tests/hosts/nspawn.py).

The root filesystem is built once per machine (mmdebstrap, cached outside the repo); each test module boots its own
hosts on it (~1 s each) so one module's installs never colour another's. Host indices come from the caller;
``GAPSEAL_TEST_SUBNET`` picks the 10.2xx range.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts import nspawn


@pytest.fixture(scope="session")
def systemd_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cached Debian 12 root filesystem for nspawn hosts (built here on a fresh machine, ~1 min).

    A machine that cannot boot them fails the test (never skips): a suite that ran nothing has proven nothing.
    """
    missing = nspawn.requirements_missing()
    if missing:
        pytest.fail(f"nspawn hosts cannot run here, missing: {', '.join(missing)} (run scripts/system-deps.sh)")
    return nspawn.build_rootfs(log=tmp_path_factory.mktemp("rootfs") / "mmdebstrap.log")


@pytest.fixture(scope="module")
def systemd_fleet(systemd_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[nspawn.SystemdFleet]:
    """A module-wide fleet of nspawn hosts: tests boot hosts by index; all are halted and removed at the end."""
    fleet = nspawn.SystemdFleet(Path(tmp_path_factory.mktemp("nspawn")), systemd_rootfs)
    try:
        yield fleet
    finally:
        fleet.teardown()
