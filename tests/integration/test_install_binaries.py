"""A build that cannot run on a host is caught before anything is copied: real ELF files, a real namespace host.

The bundle's build has three variants, in preference order: cuda, whose server needs a newer glibc than any host has
(a compiled binary with its version need patched; the real loader refuses it, see tests/unit/bundler/test_elf.py),
rocm, compiled for another machine (aarch64), and cpu, which runs. The host has both GPUs (fake tools printing
recorded real outputs), so only the binary checks can turn the choice away from cuda. ``gapseal hosts detect``
probes host 30 through Ansible (the real ``getconf``/``ldconfig -p``/``uname -m`` of the host), shows why the first
two cannot run, and picks the third; ``gapseal install --tags record`` installs that one. Host 30 (installer
range, 10.231.30.0/30).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from gapseal.cli import main
from tests.bundles import make_keys
from tests.fixtures.hardware.fakebin import install_fake_tools
from tests.hosts.netns import HostFleet
from tests.unit.bundler.test_elf import HELLO, cc, newer_glibc_copy, other_machine_copy

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

HOST = 30

SPEC = """\
apiVersion: gapseal/v1
kind: Bundle
metadata: {name: elf-check, version: 1.0.0, created: "2026-01-01T00:00:00Z"}
builds:
  - name: server
    variants:
      - {backend: cuda, arch: amd64, path: builds/newer-glibc, requires: {nvidia_driver: ">=535"}}
      - {backend: rocm, arch: amd64, path: builds/aarch64, requires: {gfx: [gfx942]}}
      - {backend: cpu, arch: amd64, path: builds/runs, requires: {}}
"""


def test_detect_and_install_skip_variants_the_host_cannot_run(
    host_fleet: HostFleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    for d in ("newer-glibc", "aarch64", "runs"):
        (src / "builds" / d / "bin").mkdir(parents=True)
    exe = cc(src / "builds/runs/bin/server", HELLO)
    newer_glibc_copy(exe, src / "builds/newer-glibc/bin/server")
    other_machine_copy(exe, src / "builds/aarch64/bin/server")
    (src / "bundle.yaml").write_text(SPEC)
    keys = make_keys(tmp_path / "keys")
    bundle = tmp_path / "bundle"
    assert (
        main(["bundle", "create", str(src / "bundle.yaml"), "--key", str(keys.private_path), "--out", str(bundle)]) == 0
    )
    capsys.readouterr()

    # The host has an NVIDIA A100 and an AMD MI300X (recorded real tool outputs): by hardware alone the cuda
    # variant would win; only the binaries' needs send it to the cpu variant.
    gpus = [
        install_fake_tools(tmp_path / "nv", "nvidia-r535-a100-mig"),
        install_fake_tools(tmp_path / "amd", "amd-mi300x"),
    ]
    host = host_fleet.add(HOST, extra_path=gpus)
    root = tmp_path / "root"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(host_fleet.inventory([host], {host.name: {"gapseal_root": str(root)}})))

    rc = main(
        ["hosts", "detect", "-i", str(inventory), "--bundle", str(bundle), "--key", str(keys.public_path), "--json"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0, doc
    (entry,) = doc["hosts"]
    assert entry["hardware"]["glibc"], "the host's glibc was not probed"
    selection = entry["variants"]["server"]
    assert selection["chosen"]["index"] == 2
    unmet = [{c["requirement"]: c["reason"] for c in v["checks"] if not c["met"]} for v in selection["variants"]]
    assert set(unmet[0]) == {"glibc"}  # the GPU requirements are met: only the binary is refused
    assert "bin/server needs GLIBC_9." in unmet[0]["glibc"]
    assert f"the host has glibc {entry['hardware']['glibc']}" in unmet[0]["glibc"]
    assert set(unmet[1]) == {"binary_machine"}
    assert "aarch64" in unmet[1]["binary_machine"]
    assert unmet[2] == {}

    report = tmp_path / "report.json"
    rc = main(
        ["install", str(bundle), "-i", str(inventory), "--key", str(keys.public_path)]
        + ["--state-file", str(tmp_path / "state.json"), "--tags", "record", "--quiet", "--report", str(report)]
    )
    doc = json.loads(report.read_text())
    assert rc == 0, doc
    (installed,) = doc["hosts"]
    assert installed["variants"]["server"] == "cpu", installed
