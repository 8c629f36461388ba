"""The egress role on a rerun, on a real systemd host (host 237 of GAPSEAL_TEST_SUBNET), driven by the host state.

The preflight role's host state reads whether gapseal's nftables table is loaded, the boot-time drop-in's digest and
modes, and whether nftables.service is enabled. On a rerun with all of it in place the egress role makes no call for
them (the connection-tracking phase and the persist tasks are skipped); anything changed on the host since - the
drop-in edited, nftables.service disabled - is put back by the same rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.installer.install import install_bundle
from gapseal.signing.keys import SigningKey, VerifyingKey
from tests.hosts.netns import SUBNET_PREFIX
from tests.hosts.nspawn import SystemdFleet, SystemdHost

pytestmark = pytest.mark.integration

DROPIN = "/etc/systemd/system/nftables.service.d/gapseal-egress.conf"
TRACK = "Check the ruleset with nft -c and start connection tracking (first lockdown only)"
PERSIST = (
    "Create the nftables.service drop-in directory",
    "Load gapseal's egress ruleset after the host's own at boot",
    "Enable nftables.service (it runs at the next boot)",
)


class Lab:
    """One systemd host, a small signed bundle and an inventory with egress lockdown on (installed at /)."""

    def __init__(self, work: Path, host: SystemdHost, fleet: SystemdFleet) -> None:
        self.host = host
        key = SigningKey.generate()
        self.public: VerifyingKey = key.public
        src = work / "src"
        (src / "builds/cpu/bin").mkdir(parents=True)
        (src / "builds/cpu/bin/serve").write_text("#!/bin/sh\nexec sleep infinity\n")
        spec = {
            "apiVersion": "gapseal/v1",
            "kind": "Bundle",
            "metadata": {"name": "egress-rerun", "version": "1.0.0"},
            "builds": [{"name": "srv", "variants": [{"backend": "cpu", "arch": "amd64", "path": "builds/cpu"}]}],
        }
        (src / "spec.yaml").write_text(yaml.safe_dump(spec))
        self.bundle = work / "bundle"
        create_bundle(src / "spec.yaml", key, self.bundle)
        self.inventory = work / "inventory.yml"
        hv = {host.name: {"egress_allow": [f"{SUBNET_PREFIX}.{host.index}.1/32"]}}
        self.inventory.write_text(yaml.safe_dump(fleet.inventory([host], host_vars=hv)))

    def install(self) -> tuple[Any, dict[str, str]]:
        """Install; return the report and, per task, how it ended on the host (ok, changed, skipped)."""
        outcome: dict[str, str] = {}

        def on_event(event: dict[str, Any]) -> None:
            data = event.get("event_data") or {}
            kind = event.get("event", "")
            if kind in ("runner_on_ok", "runner_on_skipped", "runner_on_failed"):
                status = kind.removeprefix("runner_on_")
                if status == "ok" and (data.get("res") or {}).get("changed"):
                    status = "changed"
                outcome[str(data.get("task", ""))] = status

        report = install_bundle(self.bundle, self.inventory, [self.public], on_event=on_event)
        return report, outcome


@pytest.fixture(scope="module")
def lab(systemd_fleet: SystemdFleet, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    host = systemd_fleet.boot_many([237])[0]
    return Lab(Path(tmp_path_factory.mktemp("egress-rerun")), host, systemd_fleet)


def test_first_install_locks_down_and_persists(lab: Lab) -> None:
    report, tasks = lab.install()
    assert report.ok, report
    assert tasks[TRACK] == "changed"
    assert all(tasks[t] in ("ok", "changed") for t in PERSIST), tasks
    assert lab.host.ssh(["systemctl", "is-enabled", "nftables.service"]).stdout.strip() == "enabled"
    assert "policy drop" in lab.host.ssh(["nft", "list", "table", "inet", "gapseal_egress"]).stdout


def test_a_rerun_makes_no_call_for_what_is_in_place(lab: Lab) -> None:
    report, tasks = lab.install()
    assert report.ok, report
    assert report.hosts[0].changed == 0, report.hosts[0].changed_tasks
    assert TRACK not in tasks or tasks[TRACK] == "skipped", tasks
    assert all(tasks.get(t, "skipped") == "skipped" for t in PERSIST), tasks


def test_a_rerun_puts_back_an_edited_drop_in_and_a_disabled_service(lab: Lab) -> None:
    want = lab.host.ssh(["cat", DROPIN]).stdout
    assert "ExecStartPost=" in want
    lab.host.ssh(["sh", "-c", f"echo '[Service]' > {DROPIN} && systemctl disable --quiet nftables.service"])
    report, tasks = lab.install()
    assert report.ok, report
    assert tasks["Load gapseal's egress ruleset after the host's own at boot"] == "changed", tasks
    assert tasks["Enable nftables.service (it runs at the next boot)"] == "changed", tasks
    assert lab.host.ssh(["cat", DROPIN]).stdout == want
    assert lab.host.ssh(["systemctl", "is-enabled", "nftables.service"]).stdout.strip() == "enabled"
