"""The egress lab: a host namespace whose packets are watched by the kernel, to hold the firewall evaluator to account.

Two network namespaces per lab: ``host`` (the audited host) and ``peer`` (everything around it). Two veth links:
``enc0`` to the enclave (10.<subnet>.<index>.0/24, fd20:4:<index>::/64) and ``out0`` to "outside" (198.51.100.0/24,
203.0.113.0/24 routed via 198.51.100.1, 2001:db8::/64): these documentation addresses exist only inside the two
namespaces, and neither namespace has any other link, so nothing can leave the machine (TESTING.md, the network rule).
The host has static neighbour entries, so no ARP/ND packet is ever needed (a firewall that drops ND would otherwise
silently hold back packets it accepts).

A sender process in ``host`` (pinned to one CPU, so every frame enters the peer's backlog in order) sends NEW TCP
SYNs (non-blocking connect), UDP datagrams and ICMP echo requests from unique source ports/ids, then a sentinel frame
on each link through an AF_PACKET socket (which bypasses netfilter; opened per sentinel and closed, so the audited
host holds no packet socket when it is audited, EGRESS-015). A capture process in ``peer`` reads every frame
from an AF_PACKET socket until it has seen both sentinels: what it saw is what the kernel delivered.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from gapseal.audit.collectors._common import CommandOutput
from tests.hosts.netns import SUBNET_PREFIX

_SENDER = r"""
import json, os, socket, struct, sys, errno
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
devs = [d for d in sys.argv[1].split(",") if d]
for line in sys.stdin:
    cmd = json.loads(line); results = []
    for proto, addr, port, sport in cmd["probes"]:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            if proto == "tcp":
                s = socket.socket(fam, socket.SOCK_STREAM); s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("", sport))
                results.append(s.connect_ex((addr, port))); s.close()
            elif proto == "udp":
                s = socket.socket(fam, socket.SOCK_DGRAM); s.bind(("", sport))
                s.sendto(b"gapseal-probe", (addr, port)); s.close(); results.append(0)
            else:
                if fam == socket.AF_INET:
                    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                    hdr = struct.pack("!BBHHH", 8, 0, 0, sport, 1); pkt = hdr + b"gapseal"
                    pkt = struct.pack("!BBHHH", 8, 0, csum(pkt), sport, 1) + b"gapseal"
                else:
                    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
                    pkt = struct.pack("!BBHHH", 128, 0, 0, sport, 1) + b"gapseal"
                s.sendto(pkt, (addr, 0)); s.close(); results.append(0)
        except OSError as e:
            results.append(e.errno)
    for dev in devs:  # a packet socket per sentinel, closed at once: the host is audited holding none (EGRESS-015)
        mac = open(f"/sys/class/net/{dev}/address").read().strip()
        src = bytes.fromhex(mac.replace(":", ""))
        r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); r.bind((dev, 0))
        r.send(b"\xff" * 6 + src + b"\x88\xb5" + json.dumps([cmd["batch"], dev]).encode().ljust(46, b" "))
        r.close()
    print(json.dumps(results), flush=True)
"""

_CAPTURE = r"""
import json, socket, struct, sys, ipaddress
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
print("ready", flush=True)
seen, sentinels = [], set()
while True:
    frame, meta = s.recvfrom(65535)
    if meta[0] == "lo": continue
    etype = struct.unpack("!H", frame[12:14])[0]; body = frame[14:]
    if etype == 0x88B5:
        batch, dev = json.loads(body.decode().strip()); sentinels.add(dev)
        if len(sentinels) == 2:
            print(json.dumps({"batch": batch, "seen": seen}), flush=True); seen, sentinels = [], set()
        continue
    if etype == 0x0800:
        ihl = (body[0] & 15) * 4; proto = body[9]; dst = str(ipaddress.IPv4Address(body[16:20])); l4 = body[ihl:]
    elif etype == 0x86DD:
        proto = body[6]; dst = str(ipaddress.IPv6Address(body[24:40])); l4 = body[40:]
    else:
        continue
    if proto in (6, 17):
        sport, dport = struct.unpack("!HH", l4[:4]); seen.append(["tcp" if proto == 6 else "udp", dst, dport, sport])
    elif (proto == 1 and l4[0] == 8) or (proto == 58 and l4[0] == 128):
        seen.append(["icmp", dst, None, struct.unpack("!H", l4[4:6])[0]])
"""


class LabError(RuntimeError):
    """The lab could not be set up or did not answer (carries the command and its stderr)."""


def _run(argv: Sequence[str], *, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def link_mac(ns: str, dev: str) -> str:
    """The MAC address of ``dev`` in namespace ``ns``."""
    links: list[dict[str, object]] = json.loads(_run(["ip", "-n", ns, "-j", "link", "show", dev]).stdout)
    return str(links[0]["address"])


def spawn_in(ns: str, code: str, *args: str) -> subprocess.Popen[str]:
    """Start this interpreter running ``code`` in namespace ``ns``, its three streams piped as text."""
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass(frozen=True)
class Probe:
    """One NEW packet the host sends: protocol, destination, port (None for icmp) and its unique source port/id."""

    protocol: str
    address: str
    port: int | None
    sport: int

    @property
    def key(self) -> tuple[str, str, int | None, int]:
        """What the capture reports for it."""
        return (self.protocol, self.address, self.port, self.sport)


_NFT_RESTORE = {"ip": "iptables-nft-restore", "ip6": "ip6tables-nft-restore"}
_LEGACY_RESTORE = {"ip": "iptables-legacy-restore", "ip6": "ip6tables-legacy-restore"}
"""The iptables-save loaders per family: through nftables (iptables-nft) and the legacy xtables."""


class EgressLab:
    """A host namespace and its peer (see the module docstring); a context manager that always tears down."""

    def __init__(self, index: int) -> None:
        if not 1 <= index <= 254:
            raise ValueError(f"lab index {index} outside 1..254")
        self.index = index
        token = secrets.token_hex(2)
        self.host = f"gse{token}-h{index}"
        self.peer = f"gse{token}-p{index}"
        self.enclave_v4 = [f"{SUBNET_PREFIX}.{index}.1", f"{SUBNET_PREFIX}.{index}.10"]
        self.enclave_v6 = [f"fd20:4:{index:x}::1"]
        self.outside_v4 = ["198.51.100.1", "198.51.100.7", "203.0.113.1"]
        self.outside_v6 = ["2001:db8::1", "2001:db8::7"]
        self.host_addresses = [f"{SUBNET_PREFIX}.{index}.2", "198.51.100.2", f"fd20:4:{index:x}::2", "2001:db8::2"]
        self._sport = 20000
        self._batch = 0
        self._procs: list[subprocess.Popen[str]] = []
        self.last_seen: list[tuple[Any, ...]] = []
        """Every frame the peer saw in the last ``send`` (protocol, destination, port, source port/id)."""

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ip(self, ns: str, *args: str) -> None:
        _run(["ip", "-n", ns, *args])

    def _create(self) -> None:
        h, p = self.host, self.peer
        _run(["ip", "netns", "add", h])
        _run(["ip", "netns", "add", p])
        for dev in ("enc0", "out0"):
            _run(["ip", "-n", h, "link", "add", dev, "type", "veth", "peer", "name", f"p{dev}", "netns", p])
        i = self.index
        self._ip(h, "addr", "add", f"{SUBNET_PREFIX}.{i}.2/24", "dev", "enc0")
        self._ip(h, "addr", "add", f"fd20:4:{i:x}::2/64", "dev", "enc0", "nodad")
        self._ip(h, "addr", "add", "198.51.100.2/24", "dev", "out0")
        self._ip(h, "addr", "add", "2001:db8::2/64", "dev", "out0", "nodad")
        for a in self.enclave_v4:
            self._ip(p, "addr", "add", f"{a}/24", "dev", "penc0")
        self._ip(p, "addr", "add", f"{self.enclave_v6[0]}/64", "dev", "penc0", "nodad")
        for a in self.outside_v4:
            self._ip(p, "addr", "add", f"{a}/24", "dev", "pout0")
        for a in self.outside_v6:
            self._ip(p, "addr", "add", f"{a}/64", "dev", "pout0", "nodad")
        for ns in (h, p):
            for dev in ("lo", *(("enc0", "out0") if ns == h else ("penc0", "pout0"))):
                self._ip(ns, "link", "set", dev, "up")
        self._ip(h, "route", "add", "203.0.113.0/24", "via", "198.51.100.1", "dev", "out0")
        self.set_forwarding()  # a new namespace may inherit IPv4 forwarding from the machine's: off, explicitly
        macs = {d: self._mac(p, f"p{d}") for d in ("enc0", "out0")}
        for addr in [*self.enclave_v4, *self.enclave_v6]:
            self._ip(h, "neigh", "replace", addr, "lladdr", macs["enc0"], "dev", "enc0", "nud", "permanent")
        for addr in ["198.51.100.1", "198.51.100.7", *self.outside_v6]:
            self._ip(h, "neigh", "replace", addr, "lladdr", macs["out0"], "dev", "out0", "nud", "permanent")
        self._capture = self._spawn(p, _CAPTURE)
        assert self._capture.stdout is not None  # noqa: S101
        if self._capture.stdout.readline().strip() != "ready":  # frames sent before its socket exists go unseen
            raise LabError(f"the capture did not start: {self._capture.stderr.read() if self._capture.stderr else ''}")
        self._sender = self._spawn(h, _SENDER, "enc0,out0")

    def _mac(self, ns: str, dev: str) -> str:
        return link_mac(ns, dev)

    def _spawn(self, ns: str, code: str, *args: str) -> subprocess.Popen[str]:
        proc = spawn_in(ns, code, *args)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill the lab's processes (by PID) and delete both namespaces."""
        for proc in self._procs:
            proc.kill()
            proc.wait(timeout=10)
        self._procs.clear()
        for ns in self.namespaces():
            _run(["ip", "netns", "del", ns], check=False)

    def namespaces(self) -> list[str]:
        """The namespaces the lab made."""
        return [self.host, self.peer]

    # -- using it ----------------------------------------------------------------------------------------------
    def set_forwarding(self, *, ipv4: bool = False, ipv6: bool = False, ipv4_interfaces: Sequence[str] = ()) -> None:
        """Set the host's forwarding sysctls: all IPv4 interfaces, IPv6, and IPv4 on ``ipv4_interfaces`` only."""
        settings = [f"net.ipv4.ip_forward={int(ipv4)}", f"net.ipv6.conf.all.forwarding={int(ipv6)}"]
        settings += [f"net.ipv4.conf.{dev}.forwarding=1" for dev in ipv4_interfaces]
        self.run(["sysctl", "-q", "-w", *settings])

    def run(self, argv: Sequence[str], input_text: str | None = None, check: bool = True) -> str:
        """Run ``argv`` inside the host namespace and return its stdout."""
        return _run(["ip", "netns", "exec", self.host, *argv], input_text=input_text, check=check).stdout

    def command(self, argv: list[str]) -> CommandOutput:
        """Run ``argv`` in the host namespace as the collectors' ``Trace.run`` would (for shared readers)."""
        proc = subprocess.run(["ip", "netns", "exec", self.host, *argv], capture_output=True, timeout=60, check=False)
        error = None if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        return CommandOutput(list(argv), proc.stdout, proc.stderr, proc.returncode, error)

    def reset(self) -> None:
        """Empty the host's firewall: nftables flushed, the legacy filter tables back to accept with no rules."""
        self.run(["nft", "flush", "ruleset"])
        empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        for tool in _LEGACY_RESTORE.values():
            self.run([tool], input_text=empty)

    def load(
        self,
        nft: str | None = None,
        iptables_nft: Mapping[str, str] | None = None,
        legacy: Mapping[str, str] | None = None,
    ) -> None:
        """Load rulesets on top of what the host has: nft text, then iptables-save text per family ("ip", "ip6")
        through the iptables-nft and the legacy restore tools."""
        if nft:
            self.run(["nft", "-f", "-"], input_text=nft)
        for fam, text in (iptables_nft or {}).items():
            self.run([_NFT_RESTORE[fam]], input_text=text)
        for fam, text in (legacy or {}).items():
            self.run([_LEGACY_RESTORE[fam]], input_text=text)

    def probes(
        self, protocols: Sequence[str] = ("tcp", "udp", "icmp"), ports: Sequence[int] = (22, 53, 443)
    ) -> list[Probe]:
        """One probe per destination address, protocol and port, each with a source port/id never used before."""
        out = []
        for address in [*self.enclave_v4, *self.enclave_v6, *self.outside_v4, *self.outside_v6]:
            for protocol in protocols:
                for port in ports if protocol != "icmp" else (None,):
                    self._sport += 1
                    out.append(Probe(protocol, address, port, self._sport))
        return out

    def send(self, probes: Sequence[Probe]) -> tuple[set[tuple[str, str, int | None, int]], list[Any]]:
        """Send ``probes`` from the host; return the keys the peer received and the sender's per-probe errnos."""
        self._batch += 1
        errors = self._ask(self._sender, {"batch": self._batch, "probes": [list(p.key) for p in probes]})
        return self._collect(probes), errors

    @staticmethod
    def _ask(sender: subprocess.Popen[str], cmd: dict[str, Any]) -> list[Any]:
        """Have ``sender`` send a batch; its per-probe errnos."""
        assert sender.stdin is not None  # noqa: S101
        assert sender.stdout is not None  # noqa: S101
        sender.stdin.write(json.dumps(cmd) + "\n")
        sender.stdin.flush()
        line = sender.stdout.readline()
        if not line:
            raise LabError(f"the sender died: {sender.stderr.read() if sender.stderr else ''}")
        return list(json.loads(line))

    def _collect(self, probes: Sequence[Probe]) -> set[tuple[str, str, int | None, int]]:
        """What the peer saw of batch ``self._batch`` (up to both sentinels)."""
        assert self._capture.stdout is not None  # noqa: S101
        report = self._capture.stdout.readline()
        if not report:
            raise LabError(f"the capture died: {self._capture.stderr.read() if self._capture.stderr else ''}")
        seen = json.loads(report)
        if seen["batch"] != self._batch:
            raise LabError(f"capture answered batch {seen['batch']}, expected {self._batch}")
        wanted = {p.key for p in probes}
        self.last_seen = [tuple(x) for x in seen["seen"]]  # every frame of the batch (a rewritten one too)
        return {k for k in self.last_seen if k in wanted}

    def oif(self, address: str) -> str:
        """The host's output interface towards ``address``."""
        return "enc0" if address in {*self.enclave_v4, *self.enclave_v6} else "out0"


class ForwardLab(EgressLab):
    """The egress lab plus a ``client`` namespace behind the host: a container on a bridge, a VM, an enclave host.

    The client's only link is ``cli0`` to the host's ``ctr0`` (10.88.<index>.0/24, fd20:88:<index>::/64, client .2,
    host .1, static neighbours both ways) and its default routes lead through the host, so a probe the client sends
    reaches the peer only if the host *forwards* it. Forwarding starts off (a new namespace's default); the host's
    own sender still sends the sentinels, after the client's probes have crossed the host.
    """

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.client = self.host[: -len(f"h{index}")] + f"c{index}"
        self.client_v4 = f"10.88.{index}.2"
        self.client_v6 = f"fd20:88:{index:x}::2"

    def namespaces(self) -> list[str]:
        """The namespaces the lab made (client included)."""
        return [*super().namespaces(), self.client]

    def _create(self) -> None:
        super()._create()
        h, c, i = self.host, self.client, self.index
        _run(["ip", "netns", "add", c])
        _run(["ip", "-n", h, "link", "add", "ctr0", "type", "veth", "peer", "name", "cli0", "netns", c])
        self._ip(h, "addr", "add", f"10.88.{i}.1/24", "dev", "ctr0")
        self._ip(h, "addr", "add", f"fd20:88:{i:x}::1/64", "dev", "ctr0", "nodad")
        self._ip(c, "addr", "add", f"{self.client_v4}/24", "dev", "cli0")
        self._ip(c, "addr", "add", f"{self.client_v6}/64", "dev", "cli0", "nodad")
        for ns, dev in ((h, "ctr0"), (c, "cli0"), (c, "lo")):
            self._ip(ns, "link", "set", dev, "up")
        self._ip(c, "route", "add", "default", "via", f"10.88.{i}.1", "dev", "cli0")
        self._ip(c, "-6", "route", "add", "default", "via", f"fd20:88:{i:x}::1", "dev", "cli0")
        host_mac, client_mac = self._mac(h, "ctr0"), self._mac(c, "cli0")
        for addr in (f"10.88.{i}.1", f"fd20:88:{i:x}::1"):
            self._ip(c, "neigh", "replace", addr, "lladdr", host_mac, "dev", "cli0", "nud", "permanent")
        for addr in (self.client_v4, self.client_v6):
            self._ip(h, "neigh", "replace", addr, "lladdr", client_mac, "dev", "ctr0", "nud", "permanent")
        self._client_sender = self._spawn(c, _SENDER, "")
        self.set_forwarding()

    def send(self, probes: Sequence[Probe]) -> tuple[set[tuple[str, str, int | None, int]], list[Any]]:
        """Send ``probes`` from the client through the host; the keys the peer received and the per-probe errnos."""
        self._batch += 1
        errors = self._ask(self._client_sender, {"batch": self._batch, "probes": [list(p.key) for p in probes]})
        time.sleep(0.3)  # a forwarded frame crosses two backlogs: let them drain before the sentinels follow
        self._ask(self._sender, {"batch": self._batch, "probes": []})
        return self._collect(probes), errors


def lab_requirements_missing() -> list[str]:
    """What this machine lacks for the lab."""
    missing = [
        t
        for t in ("ip", "nft", "sysctl", "iptables-legacy-restore", "iptables-nft-restore")
        if not Path(f"/usr/sbin/{t}").exists()
    ]
    if os.geteuid() != 0:
        missing.append("root")
    return missing
