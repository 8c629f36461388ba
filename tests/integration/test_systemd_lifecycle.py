"""status and uninstall on a real systemd host (Debian 12 under systemd-nspawn, host 201 of GAPSEAL_TEST_SUBNET).

On namespace hosts no unit ever runs; here the service role starts the unit, ``hosts status`` must report it
``active``, and ``uninstall`` must stop and disable it before removing its file and its state, then leave the host as
it was before the install: the directories install writes to (/etc, /opt, /var/lib, /srv, /usr/local) are listed
before the install and after each uninstall and compared. The install is a full one: a build that carries a wheel (so
the runtime role makes ``<variant>.venv``), installed twice from two versions (so the second keeps the first in
``.previous/`` for rollback), the first carrying gapseal itself (the self role's venv and wheels), a service with
systemd state, the egress lockdown with its boot-time drop-in. The service is a stand-in (``sleep``): what is tested
is what the install leaves on the host, not an inference server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.bundler.selfcontained import default_cache_dir, prepare_wheelhouse
from gapseal.cli import main
from gapseal.signing.keys import SigningKey
from tests.hosts.netns import SUBNET_PREFIX
from tests.hosts.nspawn import SystemdFleet, SystemdHost

pytestmark = pytest.mark.integration

UNIT = "gapseal-idle.service"
BUILD = "/opt/gapseal/builds/idle"
NOTES = f"{BUILD}/cpu/operator-notes.txt"
"""A file an operator put in a directory of the install: uninstall leaves it (and the directories above it)."""
ROOTS = ["/etc", "/opt", "/var/lib", "/srv", "/usr/local"]
DROPIN = "/etc/systemd/system/nftables.service.d/gapseal-egress.conf"
SYSTEMD_OWN = {
    # the lockdown enabled nftables.service; whether it was enabled before is not recorded, so uninstall leaves it
    # and says so (systemctl disable nftables.service undoes it)
    "/etc/systemd/system/sysinit.target.wants/nftables.service",
}


def write_tiny_wheel(path: Path) -> None:
    """A real (tiny) wheel: the runtime role makes the variant's venv and pip-installs it with no index."""
    files = {"idle_helper.py": b"READY = True\n"}
    dist = "idle_helper-1.0.dist-info"
    files[f"{dist}/METADATA"] = b"Metadata-Version: 2.1\nName: idle-helper\nVersion: 1.0\n"
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: gapseal-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += f"{dist}/RECORD,,\n"
    files[f"{dist}/RECORD"] = record.encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def _spec(src: Path, version: str) -> Path:
    (src / "builds/cpu/bin").mkdir(parents=True)
    (src / "builds/cpu/wheels").mkdir()
    serve = src / "builds/cpu/bin/serve"
    serve.write_text(f"#!/bin/sh\n# stand-in service {version}: stays up until stopped\nexec sleep infinity\n")
    serve.chmod(0o755)
    write_tiny_wheel(src / "builds/cpu/wheels/idle_helper-1.0-py3-none-any.whl")
    spec = {
        "apiVersion": "gapseal/v1",
        "kind": "Bundle",
        "metadata": {"name": "idle-service", "version": version},
        "builds": [{"name": "idle", "variants": [{"backend": "cpu", "arch": "amd64", "path": "builds/cpu"}]}],
        "services": [{"name": "idle", "build": "idle", "exec": "bin/serve", "port": 18080}],
    }
    path = src / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def host(systemd_fleet: SystemdFleet) -> SystemdHost:
    return systemd_fleet.boot_many([201])[0]


def _tree(host: SystemdHost) -> set[str]:
    """Every path under the directories install writes to (not crossing into other filesystems)."""
    proc = host.ssh(["find", *ROOTS, "-xdev"])
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.fixture(scope="module")
def before(host: SystemdHost) -> set[str]:
    """The host before anything of gapseal's is on it."""
    return _tree(host)


@pytest.fixture(scope="module")
def work(
    host: SystemdHost, before: set[str], systemd_fleet: SystemdFleet, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    w = Path(tmp_path_factory.mktemp("systemd-lifecycle"))
    key = SigningKey.generate()
    (w / "team.pub").write_bytes(key.public.pem())
    # 1.0.0 carries gapseal itself (--include-self): the self role makes /opt/gapseal/venv from /opt/gapseal/wheels
    cache = default_cache_dir()
    if not any(cache.glob("*.whl")):
        pytest.fail(f"no wheelhouse at {cache}: run scripts/fetch-wheels.sh (make test does) on the connected side")
    wheels = prepare_wheelhouse(w / "wheels", wheels_from=cache)
    create_bundle(_spec(w / "src-1.0.0", "1.0.0"), key, w / "bundle-1.0.0", wheels=wheels)
    create_bundle(_spec(w / "src-1.1.0", "1.1.0"), key, w / "bundle-1.1.0")
    host_vars = {host.name: {"egress_allow": [f"{SUBNET_PREFIX}.{host.index}.1/32"]}}
    inventory = systemd_fleet.inventory([host], host_vars=host_vars)
    (w / "inventory.yml").write_text(yaml.safe_dump(inventory))
    return w


def _cli(work: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main([*argv, "-i", str(work / "inventory.yml")])
    return rc, capsys.readouterr().out


def _uninstall(work: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    rc, out = _cli(work, capsys, "uninstall", "--json", *argv)
    doc = json.loads(out)
    assert rc == 0, doc
    (h,) = doc["hosts"]
    assert isinstance(h, dict)
    return h


def _unit_state(host: SystemdHost) -> str:
    return host.ssh(["systemctl", "is-active", UNIT]).stdout.strip()


def _exists(host: SystemdHost, path: str) -> bool:
    return host.ssh(["test", "-e", path]).returncode == 0


def test_status_reports_the_running_unit(work: Path, host: SystemdHost, capsys: pytest.CaptureFixture[str]) -> None:
    key, state = str(work / "team.pub"), str(work / "state.json")
    for version in ("1.0.0", "1.1.0"):
        rc, out = _cli(work, capsys, "install", str(work / f"bundle-{version}"), "--key", key, "--state-file", state)
        assert rc == 0, out
    assert _unit_state(host) == "active"
    # what the uninstall below must remove was made: the venv, the rollback copy, the state, the drop-in
    for path in (
        f"{BUILD}/cpu.venv/bin/python",
        f"{BUILD}/.previous/build/bin/serve",
        "/var/lib/private/gapseal-idle",
        "/opt/gapseal/venv/bin/gapseal",
        DROPIN,
    ):
        assert _exists(host, path), path
    rc, out = _cli(work, capsys, "hosts", "status", "--json")
    doc = json.loads(out)
    assert rc == 0, doc
    (h,) = doc["hosts"]
    assert (h["bundle"], h["version"], h["variants"]) == ("idle-service", "1.1.0", {"idle": "cpu/amd64"})
    assert h["units"] == [{"name": "idle", "unit": f"/etc/systemd/system/{UNIT}", "state": "active"}]
    assert h["files"]["ok"] == h["files"]["total"] > 0


def test_uninstall_check_changes_nothing(work: Path, host: SystemdHost, capsys: pytest.CaptureFixture[str]) -> None:
    installed = _tree(host)
    rc, out = _cli(work, capsys, "uninstall", "--check")
    assert rc == 0, out
    assert f"stop {UNIT}" in out
    assert f"remove venv {BUILD}/cpu.venv" in out
    assert _unit_state(host) == "active", "check mode stops nothing"
    assert _tree(host) == installed


def test_uninstall_removes_everything_but_an_operators_file_and_the_lockdown(
    work: Path, host: SystemdHost, before: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert host.ssh(["sh", "-c", f"echo keep me > {NOTES}"]).returncode == 0
    h = _uninstall(work, capsys, "--keep-state")
    assert h["status"] == "removed"
    actions = h["actions"]
    assert isinstance(actions, list)
    for action in (
        f"stop {UNIT}",
        f"disable {UNIT}",
        f"remove /etc/systemd/system/{UNIT}",
        f"remove venv {BUILD}/cpu.venv",
        f"remove rollback copy {BUILD}/.previous",
        f"remove {BUILD}/current.json",
        "remove venv /opt/gapseal/venv",
        "systemctl daemon-reload",
        "remove /var/lib/gapseal/installed.json",
    ):
        assert action in actions, action
    assert _unit_state(host) in ("inactive", "unknown")
    state_kept = "a service's state, kept as asked: uninstall without --keep-state removes it"
    assert h["kept"] == [
        "/etc/gapseal/egress.nft (egress lockdown rules, kept: --remove-egress removes them)",
        f"{DROPIN} (egress lockdown, reloaded at boot, kept: --remove-egress removes it)",
        f"{NOTES} (not in the install record, so not known to be gapseal's: left alone)",
        f"/var/lib/gapseal-idle ({state_kept})",
        f"/var/lib/private/gapseal-idle ({state_kept})",
    ]
    left = {
        *("/opt/gapseal", "/opt/gapseal/builds", BUILD, f"{BUILD}/cpu", NOTES),
        *("/etc/gapseal", "/etc/gapseal/egress.nft", DROPIN, DROPIN.rsplit("/", 1)[0]),
        *("/var/lib/gapseal-idle", "/var/lib/private/gapseal-idle"),
    }
    assert _tree(host) - before == left | SYSTEMD_OWN
    assert before - _tree(host) == set()
    assert host.ssh(["nft", "list", "table", "inet", "gapseal_egress"]).returncode == 0, "lockdown kept"


def test_status_then_says_not_installed_and_a_rerun_is_a_no_op(
    work: Path, host: SystemdHost, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _cli(work, capsys, "hosts", "status", "--json")
    (h,) = json.loads(out)["hosts"]
    assert (rc, h["installed"], h["problems"]) == (1, False, ["nothing installed (/var/lib/gapseal/installed.json)"])
    left = _tree(host)
    again = _uninstall(work, capsys, "--keep-state")
    assert (again["status"], again["actions"]) == ("nothing installed", [])
    assert _tree(host) == left


def test_uninstall_without_keep_state_and_with_remove_egress_leaves_the_host_as_it_was(
    work: Path, host: SystemdHost, before: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    h = _uninstall(work, capsys, "--remove-egress")
    assert h["actions"] == [
        "remove /var/lib/gapseal-idle",
        "remove service state /var/lib/private/gapseal-idle",
        "nft delete table inet gapseal_egress",
        "remove /etc/gapseal/egress.nft",
        f"remove {DROPIN}",
        "systemctl daemon-reload",
        f"remove dir {DROPIN.rsplit('/', 1)[0]}",
        "remove dir /etc/gapseal",
    ]
    assert h["kept"] == [
        f"{NOTES} (not in the install record, so not known to be gapseal's: left alone)",
        "nftables.service (enabled, by the egress lockdown or before it (not recorded): it now loads only the host's "
        "own /etc/nftables.conf at boot; systemctl disable nftables.service if the host does not use it)",
    ]
    assert host.ssh(["nft", "list", "table", "inet", "gapseal_egress"]).returncode != 0
    # the operator takes their file away; the next uninstall removes the directories it kept
    assert host.ssh(["rm", NOTES]).returncode == 0
    h = _uninstall(work, capsys)
    assert h["actions"] == [f"remove dir {d}" for d in (f"{BUILD}/cpu", BUILD, "/opt/gapseal/builds", "/opt/gapseal")]
    assert (h["kept"], _tree(host) - before, before - _tree(host)) == ([], SYSTEMD_OWN, set())
    h = _uninstall(work, capsys)
    assert (h["status"], h["actions"], h["kept"]) == ("nothing installed", [], [])
