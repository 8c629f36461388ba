"""Every path operators leave open (issue 9 section 2): named scenarios, leaky and compliant, with exact verdicts.

Staged scenarios (``tests/integration/audit_scenarios.py``): each writes the real configuration files of one path
under its own host root; the real collector of that domain reads them; its facts replace that domain in an
otherwise compliant host; the shipped policies (regopy, the default engine) evaluate every host against the site
file ``SITE``; the rule ids that fail or are unknown must be exactly the scenario's. A compliant scenario must yield
no finding at all; a leaky one may never come out compliant.

Storage scenarios read a staged ``/proc/self/mountinfo`` and, because this machine has no device-mapper, an
``lsblk`` that prints the recorded ``lsblk -pJ`` of a real LUKS/LVM laptop (tests/fixtures/audit); one more storage
scenario mounts a real ext4 loop device below a model directory in a private mount namespace and runs the whole
collector, real lsblk included.

Namespace hosts (subnet GAPSEAL_TEST_SUBNET, hosts 120/121): ``gapseal audit run -i`` collects through Ansible with
the real collectors on a compliant host and on a host carrying one leak of every class (ssh forwarding, a proxy in a
running process and in /etc/profile, an outside apt source, an outside chrony pool, a per-link DNS server, a vLLM
Quadlet container without its switches, an unencrypted disk below the model directory): the audit must report
exactly those rules.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors._units import load_units
from gapseal.audit.collectors.dns import collect_dns
from gapseal.audit.collectors.package_sources import collect_package_sources
from gapseal.audit.collectors.proxy import collect_proxy
from gapseal.audit.collectors.ssh import collect_ssh
from gapseal.audit.collectors.storage import collect_storage
from gapseal.audit.collectors.telemetry import collect_telemetry
from gapseal.audit.collectors.timesync import collect_time
from gapseal.audit.engines import load_policy_set, make_engine
from gapseal.audit.evaluate import evaluate_hosts, host_input_from_bytes
from gapseal.audit.facts import HostFacts, ProcessesFacts
from gapseal.audit.site import load_site
from tests.integration.audit_scenarios import SCENARIOS, SITE, Scenario
from tests.opa_rest.facts_fixtures import compliant_facts, facts_bytes

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audit"
NO_PROCESSES = ProcessesFacts(status="ok", netns="net:[1]")
DOMAINS = ("ssh", "proxy", "package_sources", "dns", "time", "telemetry", "storage")


def _collect(domain: str, root: Path) -> dict[str, Any]:
    """Run the real collector of ``domain`` on ``root``; return its facts as JSON."""
    store = RawStore()
    if domain == "ssh":
        facts: Any = collect_ssh(store, root)
    elif domain == "proxy":
        facts = collect_proxy(store, root, load_units(root), NO_PROCESSES)
    elif domain == "package_sources":
        facts = collect_package_sources(store, root)
    elif domain == "dns":
        facts = collect_dns(store, root)
    elif domain == "time":
        facts = collect_time(store, root)
    elif domain == "telemetry":
        facts = collect_telemetry(store, NO_PROCESSES, load_units(root), root)
    elif domain == "storage":
        facts = collect_storage(store, [(root / "srv/models", "model")], proc=root / "proc")
    else:
        raise AssertionError(domain)
    return dict(facts.model_dump(mode="json"))


@pytest.fixture(scope="module")
def site_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("site") / "site.yaml"
    path.write_text(SITE)
    return path


@contextlib.contextmanager
def recorded_lsblk(bin_dir: Path) -> Iterator[None]:
    """While active, ``lsblk`` prints the recorded output of a LUKS/LVM laptop (no device-mapper on this machine)."""
    tool = bin_dir / "lsblk"
    tool.write_text(f"#!/bin/sh\nexec cat {FIXTURES / 'lsblk-luks-lvm.json'}\n")
    tool.chmod(0o755)
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}:{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory, site_file: Path) -> dict[str, set[str]]:
    """Stage, collect and evaluate every scenario once; return each one's failing/unknown rule ids."""
    base = tmp_path_factory.mktemp("scenarios")
    lsblk_dir = tmp_path_factory.mktemp("recorded-lsblk")
    inputs = []
    for sc in SCENARIOS:
        root = base / sc.name
        root.mkdir()
        sc.stage(root)
        document = compliant_facts(sc.name)
        with recorded_lsblk(lsblk_dir):
            document[sc.domain] = _collect(sc.domain, root)
        raw = facts_bytes(HostFacts.model_validate(document).model_dump(mode="json"))
        inputs.append(host_input_from_bytes(raw, f"facts/{sc.name}.json", host=sc.name))
    policy_set = load_policy_set(data_override=load_site(site_file).site.data_override())
    with make_engine(None) as engine:
        engine.load(policy_set)
        results = evaluate_hosts(inputs, engine)
    return {h.host: {r.rule for r in h.rules if r.status in ("fail", "unknown")} for h in results.hosts}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_yields_exactly_its_rules(scenario: Scenario, verdicts: dict[str, set[str]]) -> None:
    assert verdicts[scenario.name] == set(scenario.expected)


def test_scenario_counts_cover_every_path_with_leaky_and_compliant_hosts(verdicts: dict[str, set[str]]) -> None:
    """At least 60 scenarios; every domain has leaky and compliant ones; no leaky scenario came out compliant."""
    assert len(SCENARIOS) >= 60
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    for domain in DOMAINS:
        mine = [s for s in SCENARIOS if s.domain == domain]
        assert any(s.leaky for s in mine), domain
        assert any(not s.leaky for s in mine), domain
    false_compliant = [s.name for s in SCENARIOS if s.leaky and not verdicts[s.name]]
    false_leaky = [s.name for s in SCENARIOS if not s.leaky and verdicts[s.name]]
    leaky = sum(s.leaky for s in SCENARIOS)
    print(
        f"\nscenarios: {len(SCENARIOS)} ({leaky} leaky, {len(SCENARIOS) - leaky} compliant); "
        f"false compliant: {len(false_compliant)}; false leaky: {len(false_leaky)}"
    )
    assert false_compliant == []
    assert false_leaky == []


# ------------------------------------------------------------------------------------------------ real mounts


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("losetup") is None, reason="needs root and loop devices")
def test_real_unencrypted_loop_disk_mounted_below_a_model_directory(tmp_path: Path) -> None:
    """A real ext4 loop device mounted below the model directory (private mount namespace): the real collector,
    real lsblk included, reports that mount as its own, not encrypted, and ENCRYPTION-001 names it."""
    image = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True)
    device = loop.stdout.strip()
    models = tmp_path / "models"
    (models / "shards").mkdir(parents=True)
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom gapseal.audit.collectors._common import RawStore\n"
        "from gapseal.audit.collectors.storage import collect_storage\n"
        f"f = collect_storage(RawStore(), [(Path({str(models)!r}), 'model')])\n"
        "print(f.model_dump_json())\n"
    )
    try:
        out = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'mount {device} {models / "shards"} && exec "$0" -c "$1"', sys.executable, code],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
    facts = json.loads(out.stdout)
    below = [p for p in facts["paths"] if p["below"] == str(models)]
    assert [(p["path"], p["fstype"], p["encryption"]) for p in below] == [  # reason: {below[0]["reason"]}
        (str(models / "shards"), "ext4", "not_encrypted")
    ]
    assert below[0]["device_chain"][0].endswith(os.path.basename(device))
