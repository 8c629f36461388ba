"""gapseal installs itself on a namespace host from the bundle's own wheels (``--include-self``), with no index.

The wheelhouse is the one ``scripts/fetch-wheels.sh`` fills on the connected side (make test); the gapseal wheel is
built from this checkout. The host then runs the installed ``gapseal --version``: it can audit itself later.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.bundler.selfcontained import default_cache_dir, prepare_wheelhouse
from gapseal.cli import main
from gapseal.installer.record import load_record
from gapseal.signing.keys import SigningKey
from tests.fixtures.hardware.fakebin import install_fake_tools
from tests.hosts.netns import HostFleet

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _self_site_bundle(tmp_path: Path) -> Path:
    """A signed bundle at ``tmp_path/bundle``: one cpu build and gapseal's own wheels; returns the signer's key file."""
    cache = default_cache_dir()
    if not any(cache.glob("*.whl")):
        pytest.fail(f"no wheelhouse at {cache}: run scripts/fetch-wheels.sh (make test does) on the connected side")
    src = tmp_path / "src"
    (src / "builds" / "cpu" / "bin").mkdir(parents=True)
    (src / "builds" / "cpu" / "bin" / "serve").write_text("#!/bin/sh\nexec sleep 3600\n")
    (src / "spec.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "gapseal/v1",
                "kind": "Bundle",
                "metadata": {"name": "self-site", "version": "1.0.0"},
                "builds": [{"name": "server", "variants": [{"backend": "cpu", "arch": "amd64", "path": "builds/cpu"}]}],
            }
        )
    )
    wheels = prepare_wheelhouse(tmp_path / "wheels", wheels_from=cache)
    key = SigningKey.generate()
    pub = tmp_path / "signer.pub"
    pub.write_bytes(key.public.pem())
    create_bundle(src / "spec.yaml", key, tmp_path / "bundle", wheels=wheels)
    return pub


def test_gapseal_installs_itself_from_the_bundle_wheels(host_fleet: HostFleet, tmp_path: Path) -> None:
    pub = _self_site_bundle(tmp_path)
    shutil.rmtree(tmp_path / "wheels")

    host = host_fleet.add(9, extra_path=[install_fake_tools(tmp_path / "tools", "none")])
    root = tmp_path / "root"
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        yaml.safe_dump(
            host_fleet.inventory([host], host_vars={host.name: {"gapseal_root": str(root), "egress_lockdown": False}})
        )
    )
    args = ["install", str(tmp_path / "bundle"), "-i", str(inv), "--key", str(pub), "--quiet"]
    args += ["--state-file", str(tmp_path / "state.json")]
    report = tmp_path / "report.json"
    assert main([*args, "--report", str(report)]) == 0, report.read_text()
    venv_gapseal = root / "opt/gapseal/venv/bin/gapseal"
    r = host.ssh([str(venv_gapseal), "--version"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("gapseal ")
    record = load_record(root / "var/lib/gapseal/installed.json")
    assert record.variants["server"].backend == "cpu"
    again = tmp_path / "report2.json"
    assert main([*args, "--tags", "self", "--report", str(again)]) == 0
    assert json.loads(again.read_text())["hosts"][0]["changed"] == 0


def test_a_host_whose_python_cannot_make_a_venv_fails_preflight_naming_the_package(
    host_fleet: HostFleet, tmp_path: Path
) -> None:
    """Debian's python3 ships without ensurepip (it is in python3-venv): such a host must fail at preflight, before
    anything is written, with the package to install, not halfway through at `python3 -m venv`. The host's Python
    here is the machine's own, with an ensurepip on its PYTHONPATH that fails to import as a missing one does."""
    pub = _self_site_bundle(tmp_path)

    stub = tmp_path / "no-venv" / "ensurepip"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'ensurepip\'", name="ensurepip")\n')
    python = tmp_path / "no-venv" / "python3"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={stub.parent} exec /usr/bin/python3 "$@"\n')
    python.chmod(0o755)
    host = host_fleet.add(8, extra_path=[install_fake_tools(tmp_path / "tools", "none")])
    root = tmp_path / "root"
    inv = tmp_path / "inventory.yml"
    host_vars = {"gapseal_root": str(root), "egress_lockdown": False, "ansible_python_interpreter": str(python)}
    inv.write_text(yaml.safe_dump(host_fleet.inventory([host], host_vars={host.name: host_vars})))
    report = tmp_path / "report.json"
    args = ["install", str(tmp_path / "bundle"), "-i", str(inv), "--key", str(pub), "--quiet"]
    assert main([*args, "--state-file", str(tmp_path / "state.json"), "--report", str(report)]) == 1
    (failed,) = json.loads(report.read_text())["hosts"]
    assert failed["status"] == "failed"
    (failure,) = failed["failures"]
    assert failure["task"] == "Check architecture, Python modules and free space for the install"
    assert (
        "cannot import ensurepip, needed for the virtual environment gapseal's own wheels go into"
        in (failure["message"])
    )
    assert "install python3-venv on the host (Debian, Ubuntu: apt-get install python3-venv)" in failure["message"]
    assert not root.exists(), "something was written on a host that failed preflight"
