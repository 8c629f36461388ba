"""status and uninstall on a real systemd host (Debian 12 under systemd-nspawn, host 201 of GAPSEAL_TEST_SUBNET).

On namespace hosts no unit ever runs; here the service role starts the unit, ``hosts status`` must report it
``active``, and ``uninstall`` must stop and disable it before removing its file, then leave the host as it was. The
service is a stand-in (``sleep``): what is tested is the unit's life, not an inference server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.cli import main
from gapseal.signing.keys import SigningKey
from tests.hosts.nspawn import SystemdFleet, SystemdHost

pytestmark = pytest.mark.integration

UNIT = "gapseal-idle.service"


def _spec(src: Path) -> Path:
    (src / "builds/cpu/bin").mkdir(parents=True)
    serve = src / "builds/cpu/bin/serve"
    serve.write_text("#!/bin/sh\n# stand-in service: stays up until stopped\nexec sleep infinity\n")
    serve.chmod(0o755)
    spec = {
        "apiVersion": "gapseal/v1",
        "kind": "Bundle",
        "metadata": {"name": "idle-service", "version": "1.0.0"},
        "builds": [{"name": "idle", "variants": [{"backend": "cpu", "arch": "amd64", "path": "builds/cpu"}]}],
        "services": [{"name": "idle", "build": "idle", "exec": "bin/serve", "port": 18080}],
    }
    path = src / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def host(systemd_fleet: SystemdFleet) -> SystemdHost:
    return systemd_fleet.boot_many([201])[0]


@pytest.fixture(scope="module")
def work(host: SystemdHost, systemd_fleet: SystemdFleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = Path(tmp_path_factory.mktemp("systemd-lifecycle"))
    key = SigningKey.generate()
    (w / "team.pub").write_bytes(key.public.pem())
    create_bundle(_spec(w / "src"), key, w / "bundle")
    inventory = systemd_fleet.inventory([host], host_vars={host.name: {"egress_lockdown": False}})
    (w / "inventory.yml").write_text(yaml.safe_dump(inventory))
    return w


def _cli(work: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main([*argv, "-i", str(work / "inventory.yml")])
    return rc, capsys.readouterr().out


def _unit_state(host: SystemdHost) -> str:
    return host.ssh(["systemctl", "is-active", UNIT]).stdout.strip()


def test_status_reports_the_running_unit(work: Path, host: SystemdHost, capsys: pytest.CaptureFixture[str]) -> None:
    key, state = str(work / "team.pub"), str(work / "state.json")
    rc, out = _cli(work, capsys, "install", str(work / "bundle"), "--key", key, "--state-file", state)
    assert rc == 0, out
    assert _unit_state(host) == "active"
    rc, out = _cli(work, capsys, "hosts", "status", "--json")
    doc = json.loads(out)
    assert rc == 0, doc
    (h,) = doc["hosts"]
    assert (h["bundle"], h["version"], h["variants"]) == ("idle-service", "1.0.0", {"idle": "cpu/amd64"})
    assert h["units"] == [{"name": "idle", "unit": f"/etc/systemd/system/{UNIT}", "state": "active"}]
    assert h["files"]["ok"] == h["files"]["total"] > 0


def test_uninstall_stops_disables_and_removes_the_unit(
    work: Path, host: SystemdHost, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _cli(work, capsys, "uninstall", "--check")
    assert rc == 0, out
    assert f"stop {UNIT}" in out
    assert _unit_state(host) == "active", "check mode stops nothing"
    rc, out = _cli(work, capsys, "uninstall")
    assert rc == 0, out
    assert f"stop {UNIT}" in out
    assert "systemctl daemon-reload" in out
    assert _unit_state(host) in ("inactive", "unknown")
    assert host.ssh(["test", "-e", f"/etc/systemd/system/{UNIT}"]).returncode == 1
    assert host.ssh(["test", "-e", "/var/lib/gapseal/installed.json"]).returncode == 1
    assert host.ssh(["test", "-e", "/opt/gapseal/builds/idle/cpu/bin/serve"]).returncode == 1
    rc, out = _cli(work, capsys, "uninstall", "--json")
    assert rc == 0
    assert [(h["status"], h["actions"]) for h in json.loads(out)["hosts"]] == [("nothing installed", [])]
