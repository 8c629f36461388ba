"""Whole-host collection on namespace hosts this test creates: a locked-down host and a leaky one, through the CLI
(``gapseal audit collect``) and the Ansible module; determinism; usage errors. Addresses: 10.231.53.0/29 only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gapseal.audit.collect import collect_facts
from gapseal.audit.facts import load_facts
from gapseal.cli import main
from tests.unit.audit.test_collectors_integrity import make_install

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="namespace hosts need root, iproute2 and nftables",
)

REPO = Path(__file__).resolve().parents[3]
GAPSEAL = Path(sys.executable).parent / "gapseal"
LOCKDOWN = """
table inet gapseal_egress {
  chain output {
    type filter hook output priority 0; policy drop;
    oifname "lo" accept
    ct state established,related accept
    ip daddr 10.231.0.0/16 accept
  }
}
"""


def sh(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


class Host:
    """A namespace host: its own network namespace and a file-system root prefix."""

    def __init__(self, name: str, index: int, root: Path) -> None:
        self.name = name
        self.root = root
        self.veth = f"gsh{os.getpid() % 10000}{index}"
        self.outer = f"10.231.53.{index * 4 + 1}"
        self.inner = f"10.231.53.{index * 4 + 2}"
        self.procs: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        sh("ip", "netns", "add", self.name)
        sh("ip", "-n", self.name, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"{self.veth}a", "type", "veth", "peer", "name", f"{self.veth}b", "netns", self.name)
        sh("ip", "addr", "add", f"{self.outer}/30", "dev", f"{self.veth}a")
        sh("ip", "link", "set", f"{self.veth}a", "up")
        sh("ip", "-n", self.name, "addr", "add", f"{self.inner}/30", "dev", f"{self.veth}b")
        sh("ip", "-n", self.name, "link", "set", f"{self.veth}b", "up")

    def down(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", f"{self.veth}a"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, timeout=120)

    def spawn(self, argv: list[str], env: dict[str, str]) -> None:
        cmd = ["ip", "netns", "exec", self.name, "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        self.procs.append(p)

    def collect(self, *extra: str) -> dict[str, Any]:
        r = self.run(str(GAPSEAL), "audit", "collect", "--json", "--root", str(self.root), *extra)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def base_config(root: Path) -> None:
    make_install(root)
    write(root, "etc/resolv.conf", "nameserver 10.231.53.1\n")
    write(root, "etc/environment", "LANG=C.UTF-8\n")
    write(root, "etc/ssh/sshd_config", "PasswordAuthentication no\nPermitRootLogin prohibit-password\n")
    write(root, "etc/systemd/journald.conf", "[Journal]\nStorage=persistent\nMaxRetentionSec=6month\n")
    write(root, "etc/audit/auditd.conf", "max_log_file_action = keep_logs\n")


# an inference-shaped server bound to every address of the leaky host's namespace (nothing outside can reach it)
SERVER = (
    f"#!{sys.executable}\nimport socket, time\n"
    "s = socket.create_server(('0.0.0.0', 8000))\n"  # noqa: S104
    "print('ready', flush=True)\ntime.sleep(300)\n"
)


# a loopback-only service started from the installed build directory (recognised as a gapseal-service)
EMBED = (
    f"#!{sys.executable}\nimport socket, time\n"
    "s = socket.create_server(('127.0.0.1', 8081))\nprint('ready', flush=True)\ntime.sleep(300)\n"
)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Host]]:
    tag = os.getpid()
    clean = Host(f"gs-clean-{tag}", 0, tmp_path_factory.mktemp("clean-root"))
    leaky = Host(f"gs-leaky-{tag}", 1, tmp_path_factory.mktemp("leaky-root"))
    try:
        for h in (clean, leaky):
            h.up()
            base_config(h.root)
        for h, env in ((clean, {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}),
                       (leaky, {})):  # fmt: skip
            embed = h.root / "opt/gapseal/builds/server/cpu/bin/embed-server"  # a program of the installed build
            write(h.root, str(embed.relative_to(h.root)), EMBED)
            embed.chmod(0o755)
            h.spawn([str(embed), "--port", "8081"], {"PATH": "/usr/bin:/bin", **env})
        rules = clean.root / "lockdown.nft"
        rules.write_text(LOCKDOWN)
        assert clean.run("nft", "-f", str(rules)).returncode == 0
        # the leaky host: a default route, a proxy, an exposed inference port without switches, a changed file
        sh("ip", "-n", leaky.name, "route", "add", "default", "via", leaky.outer)
        write(leaky.root, "etc/environment", "LANG=C.UTF-8\nhttps_proxy=http://10.231.53.5:3128\n")
        server = leaky.root / "bin" / "vllm"
        write(leaky.root, "bin/vllm", SERVER)
        server.chmod(0o755)
        leaky.spawn([str(server), "serve", "/models/m"], {"PATH": "/usr/bin:/bin"})
        model = leaky.root / "opt/gapseal/models/minilm/model.safetensors"
        model.write_bytes(model.read_bytes()[:-1] + b"!")
        yield clean, leaky
    finally:
        clean.down()
        leaky.down()


def test_clean_host_facts(hosts: tuple[Host, Host]) -> None:
    clean, _ = hosts
    f = clean.collect()
    assert f["routes"]["default_routes"] == []
    assert f["probes"]["egress_possible"] is False
    assert {p["outcome"] for p in f["probes"]["probes"]} == {"no_route"}
    assert f["firewall"]["nftables"]["output_policy"] == {"inet": "drop"}
    assert f["proxy"]["proxies"] == []
    assert f["sockets"]["exposed"] == []
    assert f["telemetry"]["violations"] == []
    (svc,) = f["telemetry"]["services"]
    assert (svc["service"], svc["origin"], svc["telemetry_disabled"]) == ("gapseal-service", "process", True)
    assert svc["location"] == f"pid:{clean.procs[0].pid}"
    assert [(s["address"], s["port"]) for s in f["sockets"]["listening"]] == [("127.0.0.1", 8081)]
    assert (f["integrity"]["status"], f["integrity"]["checked"], f["integrity"]["failures"]) == ("ok", 3, [])
    assert f["integrity"]["manifest_digest"] == "sha256:" + "ab" * 32
    assert f["ssh"]["password_authentication"] == "no"
    assert f["logging"]["journald"]["max_retention_sec"] == 15778800
    assert [p["role"] for p in f["storage"]["paths"]] == ["model", "install"]
    assert all(p["remote"] is False for p in f["storage"]["paths"])
    assert f["host"]["root"] == str(clean.root)
    assert f["host"]["netns"] != hosts[1].collect()["host"]["netns"]


def test_leaky_host_shows_exactly_its_leaks(hosts: tuple[Host, Host]) -> None:
    _, leaky = hosts
    f = leaky.collect()
    (default,) = f["routes"]["default_routes"]
    assert default["gateway"] == leaky.outer
    assert f["probes"]["egress_possible"] is True
    assert {(p["kind"], p["outcome"]) for p in f["probes"]["probes"] if p["family"] == "inet"} == {
        ("route", "routed"), ("udp_connect", "routed"),
    }  # fmt: skip
    assert [(p["variable"], p["origin"]) for p in f["proxy"]["proxies"]] == [("https_proxy", "etc_environment")]
    (exposed,) = f["sockets"]["exposed"]
    embed, vllm = (p.pid for p in leaky.procs)
    assert (exposed["port"], exposed["bind_scope"]) == (8000, "all")
    assert exposed["processes"][0]["pid"] == vllm
    assert sorted(f["telemetry"]["violations"]) == [
        f"gapseal-service@pid:{embed}: do not track",
        f"gapseal-service@pid:{embed}: hub offline",
        f"gapseal-service@pid:{embed}: hub telemetry",
        f"vllm@pid:{vllm}: hub offline",
        f"vllm@pid:{vllm}: usage statistics",
    ]
    assert f["integrity"]["failures"] == [f"modified: {leaky.root}/opt/gapseal/models/minilm/model.safetensors"]
    assert f["firewall"]["nftables"]["output_policy"] == {}


def test_collection_is_deterministic_apart_from_the_timestamp(hosts: tuple[Host, Host]) -> None:
    """Two collections of an unchanged host are byte-identical (timestamp pinned).

    Both run in one process inside a private mount namespace: other tests on this machine add network namespaces
    (each a bind mount under /run/netns) at any moment, and a changed mount table is a real change, not noise.
    The machine itself can still change between two collections (a device or process of an earlier test going away
    while it is collected: seen once in a full CI run), so up to three back-to-back pairs are taken: a collector that
    is not deterministic differs in every pair and fails; every differing pair is shown.
    """
    clean, _ = hosts
    code = (
        "from datetime import datetime, UTC\nfrom pathlib import Path\n"
        "from gapseal.audit.collect import collect_facts\n"
        f"root = Path({str(clean.root)!r}); now = datetime(2026, 1, 1, tzinfo=UTC)\n"
        "import json\ndiffers = []\n"
        "for _ in range(3):\n"
        "    a = collect_facts(root=root, now=now).to_json(); b = collect_facts(root=root, now=now).to_json()\n"
        "    if a == b: break\n"
        "    A, B = json.loads(a), json.loads(b)\n"
        "    differs.append({k: [A[k], B.get(k)] for k in A if A[k] != B.get(k)})\n"
        "print(json.dumps({'same': a == b, 'differ': differs}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        ["ip", "netns", "exec", clean.name, "unshare", "--mount", "--propagation", "private",
         sys.executable, "-c", code],
        capture_output=True, text=True, check=True, env=env, timeout=120,
    )  # fmt: skip
    outcome = json.loads(r.stdout)
    assert outcome["same"], f"two collections differ: {json.dumps(outcome['differ'])[:4000]}"


def test_cli_out_writes_a_loadable_document_and_refuses_overwrite(
    hosts: tuple[Host, Host], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean, _ = hosts
    out = tmp_path / "facts.json"
    assert main(["audit", "collect", "--root", str(clean.root), "--out", str(out)]) == 0
    facts = load_facts(out.read_bytes(), where=str(out))
    assert facts.integrity.checked == 3
    assert capsys.readouterr().out == ""  # written to the file only
    assert main(["audit", "collect", "--root", str(clean.root), "--out", str(out)]) == 2
    assert f"output {out} already exists" in capsys.readouterr().err
    assert main(["audit", "collect", "--root", str(clean.root), "--out", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--root", "/nonexistent/gapseal-root"], "--root /nonexistent/gapseal-root is not a directory"),
        (["--out", "/nonexistent/dir/facts.json"], "is not a writable directory"),
        (["--probe", "example.com:443"], "'example.com' is not an IP address"),
        (["--probe", "10.231.53.1"], "a TCP probe needs a port"),
    ],
    ids=["missing-root", "unwritable-out", "hostname-probe", "probe-without-port"],
)
def test_cli_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "collect", *args]) == 2
    assert message in capsys.readouterr().err


def test_record_option_points_at_another_install_record(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    clean, _ = hosts
    facts = collect_facts(root=tmp_path, installed_record=clean.root / "var/lib/gapseal/installed.json",
                          now=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    assert facts.integrity.record_path == str(clean.root / "var/lib/gapseal/installed.json")
    assert facts.integrity.status == "ok"
    assert facts.integrity.checked == 3  # recorded paths carry the clean root's prefix


def test_ansible_module_returns_the_facts(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """playbooks/library/gapseal_audit_facts.py through ansible (local connection): read-only, changed=false."""
    clean, _ = hosts
    env = {**os.environ, "ANSIBLE_LIBRARY": str(REPO / "playbooks/library"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}  # fmt: skip
    for check in (False, True):
        cmd = [str(GAPSEAL.parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
               "-e", f"ansible_python_interpreter={sys.executable}", "-m", "gapseal_audit_facts",
               "-a", f"root={clean.root} gapseal_venv={GAPSEAL.parent.parent}"]  # fmt: skip
        if check:
            cmd.append("--check")
        r = subprocess.run(["ip", "netns", "exec", clean.name, *cmd], capture_output=True, text=True, env=env,
                           timeout=180)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("localhost | SUCCESS => "), r.stdout[:200]
        result = json.loads(r.stdout.split("=> ", 1)[1])
        assert result["changed"] is False
        facts = load_facts(json.dumps(result["facts"]))
        assert facts.host.root == str(clean.root)
        assert facts.routes.default_routes == []
        assert result["unknown_domains"] == []
        assert result["command"][:4] == [str(GAPSEAL), "audit", "collect", "--json"]


def test_ansible_module_fails_closed_on_a_bad_probe(tmp_path: Path) -> None:
    env = {**os.environ, "ANSIBLE_LIBRARY": str(REPO / "playbooks/library"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}  # fmt: skip
    r = subprocess.run(
        [str(GAPSEAL.parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
         "-e", f"ansible_python_interpreter={sys.executable}", "-m", "gapseal_audit_facts",
         "-a", f"root={tmp_path} executable={GAPSEAL} probes=example.com:443"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert r.returncode != 0
    assert "'example.com' is not an IP address" in r.stdout + r.stderr
