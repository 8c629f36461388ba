"""Evidence an auditor trusts, from a real namespace host audited through Ansible (host 21 of this test's subnet).

``gapseal audit run -i`` with a site file and a trust file, twice (the second with ``--previous``), PDF printed by
the real Chromium in an empty network namespace. The report names the signer and scope, profiles the host as the host
itself reported it (its own veth address, this kernel, the OS of its root, the bundle of its install record), links
the raw file behind a finding, lists what changed, and ``gapseal evidence verify --trust`` names the signer. Nothing
is sent anywhere but between the controller and the namespace host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gapseal.audit.scope import ssh_fingerprint
from gapseal.signing.keys import SigningKey, load_public_key, write_key_pair
from tests.hosts.netns import HostFleet
from tests.integration.audit_staging import StagedHost, leak_proxy_variable, stage_install

pytestmark = pytest.mark.integration

HOST = 21
GAPSEAL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "gapseal")
SITE = """apiVersion: gapseal/v1
kind: Site
scope: {organisation: Example Clinic, system: radiology-llm, assessor: J. Doe, description: quarterly audit}
"""


@pytest.fixture(scope="module")
def staged(host_fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StagedHost]:
    root = tmp_path_factory.mktemp("root") / f"host{HOST}"
    s = stage_install(host_fleet.add(HOST), root)
    # the host's own OS file lives under its root, like every other file the collectors read there
    (root / "etc").mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/etc/os-release", root / "etc/os-release")
    leak_proxy_variable(s)
    try:
        yield s
    finally:
        s.stop()


def _inventory(fleet: HostFleet, s: StagedHost, path: Path) -> Path:
    doc = fleet.inventory(
        [s.host], host_vars={s.host.name: {"gapseal_root": str(s.root), "gapseal_executable": GAPSEAL}}
    )
    path.write_text(yaml.safe_dump(doc))
    return path


def test_evidence_from_a_real_host_names_signer_scope_host_and_changes(
    host_fleet: HostFleet, staged: StagedHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gapseal.cli import main

    priv, pub = write_key_pair(SigningKey.generate(), tmp_path / "auditor", None)
    trust = tmp_path / "trust.yaml"
    trust.write_text(f"apiVersion: gapseal/v1\nkind: Trust\nkeys:\n  - {{name: clinic-auditor, path: {pub.name}}}\n")
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    inventory = _inventory(host_fleet, staged, tmp_path / "inventory.yml")
    common = ["-i", str(inventory), "--key", str(priv), "--site", str(site), "--trust", str(trust), "--json"]

    assert main(["audit", "run", "--out", str(tmp_path / "ev1"), *common]) == 3
    capsys.readouterr()
    assert main(["audit", "run", "--out", str(tmp_path / "ev2"), "--previous", str(tmp_path / "ev1"), *common]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["report_pdf"]["made"] is True, doc["report_pdf"]
    assert doc["changes"]["new"] == 0
    assert doc["changes"]["fixed"] == 0
    assert doc["changes"]["unchanged"] >= 1

    ev = tmp_path / "ev2"
    html = (ev / "report.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    key = load_public_key(pub)
    assert "Signer clinic-auditor" in text
    assert f"Fingerprint {ssh_fingerprint(key)}" in text
    assert "Organisation Example Clinic System radiology-llm Assessor J. Doe Purpose quarterly audit" in text
    row = html.split(f'data-host="{staged.host.name}"')[1].split("</tr>")[0]
    pretty = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in Path("/etc/os-release").read_text().splitlines()
        if line.startswith("PRETTY_NAME=")
    )
    assert pretty in row
    assert os.uname().release in row
    assert staged.host.address in row  # the host's own veth address, as its local routes show it
    assert "demo 1.0.0" in row  # the bundle its install record names

    # a finding whose source is kept links the raw file and the read that produced it
    finding = html.split('data-rule="ENCRYPTION-001"')[1].split("</tr>")[0]
    raw = re.findall(r'<a class="raw" href="([^"]+)"', finding)
    assert raw
    assert all((ev / r).is_file() for r in raw)
    assert '<code class="cmd">read /proc/self/mountinfo</code>' in finding
    # the proxy finding's source may hold credentials: named, with the digest of what was read, not kept
    finding = html.split('data-rule="EGRESS-006"')[1].split("</tr>")[0]
    environment = staged.root / "etc/environment"
    digest = hashlib.sha256(environment.read_bytes()).hexdigest()
    assert f"hashed, not stored (the source may hold secrets), sha256 {digest[:16]}…" in finding
    assert f'<code class="cmd">read {environment}</code>' in finding

    assert (ev / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert main(["evidence", "verify", str(ev), "--trust", str(trust)]) == 0
    out = capsys.readouterr().out
    assert "signed by 'clinic-auditor'" in out
    assert "scope: Example Clinic / radiology-llm, assessed by J. Doe" in out
