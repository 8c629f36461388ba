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

Namespace hosts (subnet GAPSEAL_TEST_SUBNET, hosts 120/121): ``gapseal audit run -i --site`` collects through Ansible
with the real collectors on a compliant host and on a host carrying one leak of every class (ssh forwarding, a proxy
in a running process and in /etc/profile, an outside apt source, an outside chrony pool, a per-link DNS server, a
vLLM Quadlet container without its switches, a real unencrypted disk below the model directory): the audit must
report exactly those rules, and results.json the site file's sha256 and scope.

A real systemd host (nspawn, host 130): networkd is given an outside DNS and NTP server; the files it reads and the
link state it writes are copied from the host unchanged and the collectors find both servers in them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

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
from tests.hosts.netns import HostFleet
from tests.integration.audit_scenarios import LEAKY_HOST_RULES, SCENARIOS, SITE, Scenario, leak_every_class
from tests.integration.audit_staging import StagedHost, stage_install
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


# ------------------------------------------------------------------------------------------------ through Ansible

COMPLIANT_HOST, LEAKY_HOST = 120, 121
GAPSEAL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "gapseal")
WAIVERS = """\
apiVersion: gapseal/v1
kind: Waivers
waivers:
  - rule: ENCRYPTION-001
    hosts: "*"
    justification: "test machine: no device-mapper, so no dm-crypt volume can be staged"
    approver: "auditor@example.org"
    expires: "2099-12-31"
"""


@dataclass
class Hosts:
    staged: dict[int, StagedHost]
    below_model_dir: Path
    """The loop-device ext4 file system mounted below the leaky host's model directory."""


@pytest.fixture(scope="module")
def ansible_hosts(host_fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """Host 120 staged compliant, host 121 with one leak of every class (a real unencrypted disk below its model
    directory, mounted before its sshd starts so the host's mount namespace holds it)."""
    roots = tmp_path_factory.mktemp("ansible-roots")
    image = roots / "disk.img"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    device = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True)
    loop = device.stdout.strip()
    below = roots / f"host{LEAKY_HOST}" / "opt/gapseal/models/minilm/shards"
    below.mkdir(parents=True)
    subprocess.run(["mount", loop, str(below)], check=True)
    staged: dict[int, StagedHost] = {}
    try:
        for i in (COMPLIANT_HOST, LEAKY_HOST):
            staged[i] = stage_install(host_fleet.add(i), roots / f"host{i}")
        leaky = staged[LEAKY_HOST]
        leak_every_class(leaky.root, leaky.host.netns, leaky.pids)
        yield Hosts(staged, below)
    finally:
        for s in staged.values():
            off = ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]  # undo the leak for the next user of the host
            subprocess.run(["ip", "netns", "exec", s.host.netns, *off], check=False)
            s.stop()
        subprocess.run(["umount", "-l", str(below)], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


def _audit_run(
    fleet: HostFleet, staged: StagedHost, tmp: Path, site: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any], Path]:
    from gapseal.cli import main
    from gapseal.signing.keys import SigningKey, write_key_pair

    key, _ = write_key_pair(SigningKey.generate(), tmp / "auditor", None)
    inventory = tmp / "inventory.yml"
    doc = fleet.inventory(
        [staged.host],
        host_vars={staged.host.name: {"gapseal_root": str(staged.root), "gapseal_executable": GAPSEAL}},
    )
    inventory.write_text(yaml.safe_dump(doc))
    (tmp / "waivers.yaml").write_text(WAIVERS)
    out = tmp / "evidence"
    argv = ["audit", "run", "-i", str(inventory), "--out", str(out), "--key", str(key), "--json"]
    argv += ["--waivers", str(tmp / "waivers.yaml"), "--site", str(site)]
    rc = main(argv)
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return rc, json.loads(captured.out), out


def test_ansible_compliant_host_has_no_finding_and_records_the_site(
    host_fleet: HostFleet,
    ansible_hosts: Hosts,
    site_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, doc, out = _audit_run(host_fleet, ansible_hosts.staged[COMPLIANT_HOST], tmp_path, site_file, capsys)
    assert doc["findings"] == []
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["site"]["sha256"] == "sha256:" + hashlib.sha256(site_file.read_bytes()).hexdigest()
    assert results["site"]["source"] == "file"
    assert results["site"]["scope"]["organisation"] == "Example Clinic"


def test_ansible_leaky_host_reports_every_class(
    host_fleet: HostFleet,
    ansible_hosts: Hosts,
    site_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    leaky = ansible_hosts.staged[LEAKY_HOST]
    rc, doc, out = _audit_run(host_fleet, leaky, tmp_path, site_file, capsys)
    found = {f["rule"] for f in doc["findings"]}
    assert found == set(LEAKY_HOST_RULES), json.dumps(doc["findings"], indent=1)
    assert rc == 3
    facts = json.loads((out / f"facts/{leaky.host.name}.json").read_text())
    process_proxies = [s for s in facts["proxy"]["proxies"] if s["origin"] == "process"]
    assert [s["location"] for s in process_proxies] == [f"pid:{leaky.pids[-1]} (sleep)"]
    assert {s["origin"] for s in facts["proxy"]["proxies"]} == {"process", "profile"}
    assert [c["context"] for c in facts["ssh"]["forwarding"] if c["tcp_forwarding"]] == ["Match User ops"]
    assert (facts["routes"]["ip_forwarding"]["inet"], facts["routes"]["ip_forwarding"]["inet6"]) == (True, False)
    assert [(s["service"], s["origin"], s["image"]) for s in facts["telemetry"]["services"]] == [
        ("vllm", "quadlet", "docker.io/vllm/vllm-openai:v0.6.3")
    ]
    below = [p for p in facts["storage"]["paths"] if p["below"]]
    assert [(p["path"], p["fstype"], p["encryption"]) for p in below] == [
        (str(ansible_hosts.below_model_dir), "ext4", "not_encrypted")
    ]
    results = json.loads((out / "results.json").read_text())
    (host,) = results["hosts"]
    encryption = next(r for r in host["rules"] if r["rule"] == "ENCRYPTION-001")
    assert encryption["status"] == "waived"
    assert any(str(ansible_hosts.below_model_dir) in f["message"] for f in encryption["findings"])


# ------------------------------------------------------------------------------------------------ a real systemd host

SYSTEMD_HOST = 130


def test_networkd_link_state_of_a_real_systemd_host(systemd_fleet: Any, tmp_path: Path) -> None:
    """systemd-networkd on a booted Debian 12 host (systemd as PID 1) hands a link an outside DNS and NTP server: the
    .network file and the link state networkd itself wrote under /run are copied from the host as they are, and
    the real collectors find both servers there (EGRESS-007 and EGRESS-011 would fire)."""
    host = systemd_fleet.boot_many([SYSTEMD_HOST])[0]
    network = (
        "[Match]\nType=ether\n[Network]\n"
        f"Address={host.address}/30\nKeepConfiguration=static\nDNS=203.0.113.53\nNTP=198.51.100.123\n"
    )
    script = (
        f"mkdir -p /etc/systemd/network && printf '%s' '{network}' > /etc/systemd/network/50-lab.network && "
        "systemctl --no-block restart systemd-networkd"
    )
    started = host.ssh(["sh", "-c", script])
    assert started.returncode == 0, started.stderr

    def ssh_retrying(command: str) -> subprocess.CompletedProcess[str]:
        """networkd reconfigures the very link ssh runs over: a connection made while it does can stall, so every
        call after the restart is short and retried (seen on a loaded machine), until a 90 s budget is spent."""
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                done = host.ssh(["sh", "-c", command], timeout=10)
                if done.returncode == 0 and done.stdout.strip():
                    return cast("subprocess.CompletedProcess[str]", done)
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to {command!r} within 90 s after restarting networkd")
            time.sleep(0.5)

    links = ssh_retrying("grep -qs '^NTP=' /run/systemd/netif/links/* && grep -ls '^DNS=' /run/systemd/netif/links/*")
    root = tmp_path / "host"
    for remote in ["/etc/systemd/network/50-lab.network", *links.stdout.split()]:
        text = ssh_retrying(f"cat {remote}")
        (root / remote.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / remote.lstrip("/")).write_text(text.stdout)
    dns = collect_dns(RawStore(), root)
    assert {(n.address, n.origin.split(":", 1)[0]) for n in dns.nameservers} == {
        ("203.0.113.53", "networkd"),
        ("203.0.113.53", "networkd-link"),
    }
    timefacts = collect_time(RawStore(), root)
    assert {(s.address, s.location.split(":")[0].rsplit("/", 2)[-2]) for s in timefacts.servers} == {
        ("198.51.100.123", "network"),
        ("198.51.100.123", "links"),
    }
