"""The nspawn host fixture itself: systemd is PID 1, units start, enable and restart, a reboot comes back.

Runs on real systemd hosts (tests/hosts/nspawn.py); host index 231 of GAPSEAL_TEST_SUBNET.
"""

from __future__ import annotations

import pytest

from tests.hosts.nspawn import SystemdFleet, SystemdHost

pytestmark = pytest.mark.integration

UNIT = """\
[Unit]
Description=gapseal fixture check

[Service]
ExecStart=/bin/sleep infinity
"""


@pytest.fixture(scope="module")
def host(systemd_fleet: SystemdFleet) -> SystemdHost:
    return systemd_fleet.boot_many([231])[0]


def _ssh_ok(host: SystemdHost, *argv: str) -> str:
    proc = host.ssh(list(argv))
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc.stdout.strip()


def test_systemd_is_pid1_and_the_host_has_only_its_own_link(host: SystemdHost) -> None:
    """PID 1 is systemd, the boot finished, and the only route is the host's own /30 (no default route)."""
    assert _ssh_ok(host, "cat", "/proc/1/comm") == "systemd"
    assert _ssh_ok(host, "systemctl", "is-system-running") in ("running", "degraded")
    assert _ssh_ok(host, "hostname") == host.name
    routes = _ssh_ok(host, "ip", "-4", "route", "show")
    assert "default" not in routes
    assert host.address.rsplit(".", 1)[0] in routes


def test_unit_starts_enables_restarts_and_survives_reboot(host: SystemdHost) -> None:
    """A unit written over ssh starts, is enabled, gets a new PID on restart, and is running again after reboot."""
    host.ssh(
        [
            "sh",
            "-c",
            f"cat > /etc/systemd/system/gs-check.service <<'U'\n{UNIT}[Install]\nWantedBy=multi-user.target\nU",
        ]
    )
    _ssh_ok(host, "systemctl", "daemon-reload")
    _ssh_ok(host, "systemctl", "enable", "--now", "gs-check.service")
    assert _ssh_ok(host, "systemctl", "is-active", "gs-check.service") == "active"
    first = _ssh_ok(host, "systemctl", "show", "-p", "MainPID", "--value", "gs-check.service")
    _ssh_ok(host, "systemctl", "restart", "gs-check.service")
    second = _ssh_ok(host, "systemctl", "show", "-p", "MainPID", "--value", "gs-check.service")
    assert first != second
    assert second != "0"
    host.reboot()
    assert _ssh_ok(host, "systemctl", "is-active", "gs-check.service") == "active"
    assert "gs-check.service" in _ssh_ok(host, "journalctl", "-u", "gs-check.service", "--no-pager", "-o", "cat", "-b")
