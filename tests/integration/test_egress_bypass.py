"""Paths out below the IP hooks, built for real and audited: EGRESS-013 (a namespace with its own way out), EGRESS-014
(a bridge carrying the uplink) and EGRESS-015 (a packet socket).

The lab: an audited namespace host whose only link (``up0``) leads to the machine's initial namespace, as every
namespace host's does, where a bridge joins it to a peer namespace standing for "outside" (198.51.100.1). The audited
host's ruleset drops every packet it sends and forwards. Each leak is built for real in or beside it, a datagram is
sent through it and the outside peer must receive it (proof the leak is real although the output and forward
policies are drop); then the real collector runs inside the audited namespace and the shipped policies must report
exactly that leak's rule beside what the clean host reports, and the clean host none of the three.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gapseal.audit.evaluate import evaluate_facts
from tests.integration.egress_lab import lab_requirements_missing, link_mac, spawn_in
from tests.integration.test_egress_oracle import GAPSEAL

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(lab_requirements_missing()), reason=f"needs {lab_requirements_missing()}"),
]

BYPASS_RULES = ("EGRESS-013", "EGRESS-014", "EGRESS-015")
OUTSIDE = "198.51.100.1"
PORT = 40123
LOCKDOWN = """table inet lock {
  chain out { type filter hook output priority 0; policy drop; oifname "lo" accept; }
  chain forward { type filter hook forward priority 0; policy drop; }
}
"""
"""The audited host sends and forwards nothing (EGRESS-003/004/012 see no way out)."""

RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(20)
try:
    print(s.recvfrom(512)[0].decode(), flush=True)
except TimeoutError:
    print("nothing", flush=True)
"""

SEND_RAW = """
import socket, struct, sys
ifname, dst_mac, src_ip, dst_ip, port, text = sys.argv[1:7]
payload = text.encode()
udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
words = struct.unpack("!10H", header)
total = sum(words)
total = (total & 0xFFFF) + (total >> 16)
total = (total & 0xFFFF) + (total >> 16)
header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
src_mac = s.getsockname()[4]
s.send(bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\\x08\\x00" + header + udp)
print("sent", flush=True)
sys.stdin.read()  # hold the socket open until the test is done with the audit
"""


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; on failure raise with its stderr."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass
class BypassLab:
    """The audited host ``a``, the outside ``o`` behind the initial namespace's bridge, and extra namespaces."""

    token: str = field(default_factory=lambda: secrets.token_hex(2))
    extra: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def a(self) -> str:
        """The audited namespace."""
        return f"gsbp{self.token}-a"

    @property
    def o(self) -> str:
        """The outside peer's namespace."""
        return f"gsbp{self.token}-o"

    @property
    def bridge(self) -> str:
        """The initial namespace's bridge standing for the LAN."""
        return f"gsbp{self.token}br"

    def ns(self, suffix: str) -> str:
        """Create (and remember) a namespace ``gsbp<token>-<suffix>``."""
        name = f"gsbp{self.token}-{suffix}"
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        self.extra.append(name)
        return name

    def up(self) -> None:
        """Build the audited host, the LAN bridge and the outside peer."""
        for name in (self.a, self.o):
            run(["ip", "netns", "add", name])
            run(["ip", "-n", name, "link", "set", "lo", "up"])
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.links.append(self.bridge)
        for ns, peer, addr in ((self.a, "up0", "198.51.100.2/24"), (self.o, "out0", f"{OUTSIDE}/24")):
            root_end = f"gsbp{self.token}{peer}"
            run(["ip", "link", "add", root_end, "type", "veth", "peer", "name", peer, "netns", ns])
            self.links.append(root_end)
            run(["ip", "link", "set", root_end, "master", self.bridge, "up"])
            run(["ip", "-n", ns, "addr", "add", addr, "dev", peer])
            run(["ip", "-n", ns, "link", "set", peer, "up"])
        run(["ip", "link", "set", self.bridge, "up"])
        for key in ("net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"):
            run(["ip", "netns", "exec", self.a, "sysctl", "-q", "-w", key])
        nft = subprocess.run(
            ["ip", "netns", "exec", self.a, "nft", "-f", "-"], input=LOCKDOWN, text=True, capture_output=True
        )
        assert nft.returncode == 0, nft.stderr

    def down(self) -> None:
        """Stop what the lab started and delete its namespaces and links (safe after a partial ``up``)."""
        for p in self.procs:
            p.kill()
            p.wait()
        for link in reversed(self.links):
            run(["ip", "link", "del", link], check=False)
        for name in [*self.extra, self.a, self.o]:
            run(["ip", "netns", "del", name], check=False)

    def mac(self, ns: str, ifname: str) -> str:
        """The MAC address of ``ifname`` in ``ns``."""
        return link_mac(ns, ifname)

    def start(self, ns: str, code: str, *args: str) -> subprocess.Popen[str]:
        """Start Python ``code`` in ``ns``; wait for its first line."""
        proc = spawn_in(ns, code, *args)
        self.procs.append(proc)
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first in ("ready", "sent"), (
            f"{code[:40]!r} in {ns}: {first!r} {proc.stderr.read() if proc.stderr else ''}"
        )
        return proc

    def outside_receives(self, send: Callable[[str], None]) -> str:
        """Listen on the outside peer, let ``send(text)`` send ``text``, return what arrived (``nothing``)."""
        text = f"leak-{secrets.token_hex(4)}"
        listener = self.start(self.o, RECEIVE, OUTSIDE, str(PORT))
        send(text)
        assert listener.stdout is not None
        return listener.stdout.readline().strip()

    def audit(self, workdir: Path) -> dict[str, str]:
        """Collect the audited namespace's facts with gapseal and evaluate them: failing/unknown rule ids."""
        root = workdir / "root"
        root.mkdir(exist_ok=True)
        facts = workdir / "facts.json"
        run(["ip", "netns", "exec", self.a, GAPSEAL, "audit", "collect", "--root", str(root), "--out", str(facts),
             "--overwrite"])  # fmt: skip
        raw = facts.read_bytes()
        (host,) = evaluate_facts({"host": raw}).hosts
        self.last_facts = json.loads(raw)
        self.last_messages = {r.rule: [f.message for f in r.findings] for r in host.rules}
        return {r.rule: r.status for r in host.rules if r.status != "pass"}


def udp_from(ns: str) -> Callable[[str], None]:
    """A sender of one datagram from ``ns`` to the outside peer."""

    def send(text: str) -> None:
        code = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.sendto(sys.argv[1].encode(), (sys.argv[2], int(sys.argv[3])))"
        )
        run(["ip", "netns", "exec", ns, sys.executable, "-c", code, text, OUTSIDE, str(PORT)])

    return send


@pytest.fixture
def lab() -> Iterator[BypassLab]:
    lab = BypassLab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@pytest.fixture
def clean(lab: BypassLab, tmp_path: Path) -> dict[str, str]:
    """What the clean audited host reports (none of the bypass rules; the same as the leaks' bases)."""
    (tmp_path / "clean").mkdir()
    return lab.audit(tmp_path / "clean")


def test_clean_host_reports_no_bypass_and_sends_nothing(lab: BypassLab, tmp_path: Path) -> None:
    """Control: a container behind a veth into the audited host only, no bridge, no packet socket."""
    child = lab.ns("c")
    run(["ip", "-n", lab.a, "link", "add", "vc0", "type", "veth", "peer", "name", "eth0", "netns", child])
    run(["ip", "-n", child, "addr", "add", "198.51.100.9/24", "dev", "eth0"])
    run(["ip", "-n", child, "link", "set", "eth0", "up"])
    run(["ip", "-n", lab.a, "link", "set", "vc0", "up"])
    clean = lab.audit(tmp_path)
    assert not [r for r in clean if r in BYPASS_RULES], lab.last_messages
    blocked = run(["ip", "netns", "exec", lab.a, sys.executable, "-c",
                   f"import socket;socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'x',('{OUTSIDE}',{PORT}))"],
                  check=False)  # fmt: skip
    assert "Operation not permitted" in blocked.stderr, "the audited host's output policy must drop its packets"
    datapath = lab.last_facts["datapath"]
    assert datapath["status"] == "ok"
    (container,) = [n for n in datapath["namespaces"] if child in n["names"]]
    assert container["attached"]
    assert container["ways_out"] == []
    assert [n["names"] for n in datapath["namespaces"]] == [[child]], "only the host's own namespaces are reported"


def test_macvlan_on_the_uplink_in_a_child_namespace(lab: BypassLab, clean: dict[str, str], tmp_path: Path) -> None:
    child = lab.ns("mv")
    run(["ip", "-n", lab.a, "link", "add", "mv0", "link", "up0", "type", "macvlan", "mode", "bridge"])
    run(["ip", "-n", lab.a, "link", "set", "mv0", "netns", child])
    run(["ip", "-n", child, "addr", "add", "198.51.100.3/24", "dev", "mv0"])
    run(["ip", "-n", child, "link", "set", "mv0", "up"])
    text = lab.outside_receives(udp_from(child))
    assert text.startswith("leak-"), "the child's macvlan must reach the outside past the host's drop policies"

    leak = lab.audit(tmp_path)
    assert {r: s for r, s in leak.items() if r not in clean} == {"EGRESS-013": "fail"}, lab.last_messages
    (message,) = lab.last_messages["EGRESS-013"]
    assert f"ip netns {child}" in message
    assert "mv0 (macvlan on a device of net:[" in message


def test_bridge_enslaving_the_uplink(lab: BypassLab, clean: dict[str, str], tmp_path: Path) -> None:
    child = lab.ns("br")
    run(["ip", "-n", lab.a, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", lab.a, "link", "add", "vc0", "type", "veth", "peer", "name", "eth0", "netns", child])
    for port in ("up0", "vc0"):
        run(["ip", "-n", lab.a, "link", "set", port, "master", "br0", "up"])
    run(["ip", "-n", lab.a, "link", "set", "br0", "up"])
    run(["ip", "-n", child, "addr", "add", "198.51.100.4/24", "dev", "eth0"])
    run(["ip", "-n", child, "link", "set", "eth0", "up"])
    # br_netfilter off for this host: bridged IPv4 skips the forward chain whose policy is drop
    run(["ip", "netns", "exec", lab.a, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0"])
    text = lab.outside_receives(udp_from(child))
    assert text.startswith("leak-"), "frames bridged onto the uplink must reach the outside past the drop policies"

    leak = lab.audit(tmp_path)
    assert {r: s for r, s in leak.items() if r not in clean} == {"EGRESS-014": "fail"}, lab.last_messages
    (message,) = lab.last_messages["EGRESS-014"]
    assert message.startswith("bridge br0 bridges uplink up0 with vc0: ")
    assert "bridge-nf-call-iptables 0" in message


def test_packet_socket_on_the_uplink(lab: BypassLab, clean: dict[str, str], tmp_path: Path) -> None:
    out_mac = lab.mac(lab.o, "out0")

    def send(text: str) -> None:
        lab.start(lab.a, SEND_RAW, "up0", out_mac, "198.51.100.2", OUTSIDE, str(PORT), text)

    text = lab.outside_receives(send)
    assert text.startswith("leak-"), "a raw frame from the audited host must reach the outside past its output drop"

    leak = lab.audit(tmp_path)
    assert {r: s for r, s in leak.items() if r not in clean} == {"EGRESS-015": "fail"}, lab.last_messages
    (message,) = lab.last_messages["EGRESS-015"]
    assert "(raw, ethertype 0x0000, interface up0) sends frames below the IP hooks" in message
    assert "python" in message
