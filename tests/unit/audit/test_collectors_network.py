"""Routes, firewall and listening sockets: parsers on real command output, and the live collectors inside network
namespaces this test creates (addresses 10.231.51.0/30 only; nothing else is contacted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gapseal.audit.collectors._common import RawStore, Trace
from gapseal.audit.collectors.firewall import parse_iptables_save, parse_nft_ruleset
from gapseal.audit.collectors.routes import collect_ip_forwarding, parse_routes, parse_rules
from gapseal.audit.collectors.sockets import bind_scope, decode_address, parse_proc_net

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="network namespaces need root, iproute2 and nftables",
)

REPO = Path(__file__).resolve().parents[3]
ANY4 = "0.0.0.0"  # noqa: S104 - the unspecified address as the kernel reports it, never bound here


def _run(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


@pytest.fixture
def ns() -> Iterator[str]:
    """A fresh namespace with ``lo`` up and a veth pair: 10.231.51.2/30 inside, 10.231.51.1/30 outside."""
    name = f"gs-net-{os.getpid()}"
    veth = f"gsn{os.getpid() % 100000}"  # same names each test: the pair is deleted synchronously below
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "link", "add", f"{veth}a", "type", "veth", "peer", "name", f"{veth}b", "netns", name)
        _run("ip", "addr", "add", "10.231.51.1/30", "dev", f"{veth}a")
        _run("ip", "link", "set", f"{veth}a", "up")
        _run("ip", "-n", name, "addr", "add", "10.231.51.2/30", "dev", f"{veth}b")
        _run("ip", "-n", name, "link", "set", f"{veth}b", "up")
        yield name
    finally:
        # deleting one end removes the pair now; a namespace's own teardown is asynchronous in the kernel
        subprocess.run(["ip", "link", "del", f"{veth}a"], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


def collect_in(ns: str, expr: str) -> dict[str, Any]:
    """Run one collector inside ``ns`` and return its facts as JSON."""
    code = (
        "from pathlib import Path\n"
        "from gapseal.audit.collectors._common import RawStore\n"
        "from gapseal.audit.collectors.routes import collect_routes\n"
        "from gapseal.audit.collectors.firewall import collect_firewall\n"
        "from gapseal.audit.collectors.sockets import collect_sockets\n"
        "from gapseal.audit.collectors.processes import list_processes, own_netns\n"
        f"print(({expr}).model_dump_json())\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------ routes


def test_routes_parse_real_ip_output() -> None:
    """``ip -j route`` output of this machine's own namespace (whatever it holds) parses into routes."""
    data = json.loads(_run("ip", "-4", "-j", "route", "show", "table", "all") or "[]")
    routes = parse_routes(data, "inet")
    assert len(routes) == len([r for r in data if r.get("dst")])
    assert all(r.family == "inet" for r in routes)
    assert {r.table for r in routes} >= {"local"}


def test_route_fields() -> None:
    routes = parse_routes(
        [
            {"dst": "default", "gateway": "10.231.51.1", "dev": "eth0", "flags": []},
            {"type": "local", "dst": "10.231.51.2", "dev": "eth0", "table": "local", "scope": "host"},
            {"type": "unreachable", "dst": "default", "table": "100", "metric": 5, "flags": []},
            {"dst": "10.231.0.0/16", "dev": "lo", "protocol": "static"},
            {"dst": "not-a-network"},
        ],
        "inet",
    )
    default, local, unreachable, via_lo = routes
    assert (default.is_default, default.forwards, default.dst.cidr, default.table) == (True, True, "0.0.0.0/0", "main")
    assert default.dst.address_class == "unspecified"
    assert (local.forwards, local.dst.cidr, local.dst.first, local.dst.last) == (
        False, "10.231.51.2/32", "0ae73302", "0ae73302",
    )  # fmt: skip
    assert (unreachable.is_default, unreachable.forwards, unreachable.metric) == (True, False, 5)
    assert via_lo.forwards is False
    assert (via_lo.dst.first, via_lo.dst.last) == ("0ae70000", "0ae7ffff")


def test_ipv6_network_bounds_are_32_hex_digits() -> None:
    (r,) = parse_routes([{"dst": "2001:db8::/32", "dev": "eth0"}], "inet6")
    assert r.dst.first == "20010db8" + "0" * 24
    assert r.dst.last == "20010db8" + "f" * 24
    assert r.dst.address_class == "documentation"


def test_rules_parse() -> None:
    rules = parse_rules(
        [
            {"priority": 0, "src": "all", "table": "local"},
            {"priority": 100, "src": "10.231.51.0", "srclen": 24, "fwmark": "0x1", "table": "100"},
            {"priority": 200, "src": "all", "action": "unreachable"},
        ],
        "inet",
    )
    assert [(r.priority, r.table, r.action) for r in rules] == [
        (0, "local", "lookup"), (100, "100", "lookup"), (200, None, "unreachable"),
    ]  # fmt: skip
    assert rules[1].selector == {"fwmark": "0x1", "src": "10.231.51.0", "srclen": "24"}


def test_rejects_non_array_output() -> None:
    with pytest.raises(ValueError, match="JSON array"):
        parse_routes({"dst": "default"}, "inet")


def test_live_routes_in_namespace_without_default_route(ns: str) -> None:
    facts = collect_in(ns, "collect_routes(RawStore())")
    assert facts["status"] == "ok"
    assert facts["default_routes"] == []
    fwd = [(r["dst"]["cidr"], r["dev"]) for r in facts["forwarding_routes"]]
    dev = f"gsn{os.getpid() % 100000}b"
    assert fwd == [("10.231.51.0/30", dev), ("fe80::/64", dev)]  # connected routes leave the host, onto the link
    assert [r["dst"]["address_class"] for r in facts["forwarding_routes"]] == ["private", "link_local"]
    assert [s["argv"] for s in facts["sources"] if s["kind"] == "command"] == [
        ["ip", "-4", "-j", "route", "show", "table", "all"],
        ["ip", "-4", "-j", "rule", "show"],
        ["ip", "-6", "-j", "route", "show", "table", "all"],
        ["ip", "-6", "-j", "rule", "show"],
    ]
    forwarding = facts["ip_forwarding"]  # a new namespace starts with forwarding off
    assert (forwarding["status"], forwarding["inet"], forwarding["inet6"]) == ("ok", False, False), forwarding
    assert {("all", 0), ("default", 0), ("lo", 0), (dev, 0)} <= {
        (s["interface"], s["value"]) for s in forwarding["settings"] if s["family"] == "inet"
    }
    assert all((s["exit_code"] == 0 or s["kind"] != "command") and s["stored"] for s in facts["sources"])


def test_live_default_route_is_reported(ns: str) -> None:
    _run("ip", "-n", ns, "route", "add", "default", "via", "10.231.51.1")
    _run("ip", "-n", ns, "-6", "route", "add", "unreachable", "default")
    facts = collect_in(ns, "collect_routes(RawStore())")
    (default,) = facts["default_routes"]
    assert (default["family"], default["gateway"], default["dst"]["cidr"]) == ("inet", "10.231.51.1", "0.0.0.0/0")
    v6 = [r for r in facts["routes"] if r["family"] == "inet6" and r["is_default"]]
    assert [(r["type"], r["forwards"]) for r in v6] == [("unreachable", False)]


# ------------------------------------------------------------------------------------------------ firewall


LOCKDOWN = """
table inet gapseal {
  set enclave4 { type ipv4_addr; flags interval; elements = { 10.231.0.0/16 } }
  chain output {
    type filter hook output priority 0; policy drop;
    oifname "lo" accept
    ct state established,related accept
    ip daddr @enclave4 tcp dport { 22, 443 } accept comment "enclave"
    ip6 daddr fd00::/8 accept
    tcp dport 1000-1010 accept
    ip daddr != 10.0.0.0/8 counter drop
    meta mark 0x1 accept
    jump audit
  }
  chain audit { }
}
table ip legacy {
  chain out { type filter hook output priority 10; policy accept; }
}
"""


def test_live_nftables_lockdown_is_parsed(ns: str, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.nft"
    rules_file.write_text(LOCKDOWN)
    _run("ip", "netns", "exec", ns, "nft", "-f", str(rules_file))
    facts = collect_in(ns, "collect_firewall(RawStore())")
    nft = facts["nftables"]
    assert (facts["status"], nft["status"], nft["present"]) == ("ok", "ok", True)
    assert nft["output_policy"] == {"inet": "drop", "ip": "accept"}
    chains = {(c["table"], c["name"]): c for c in nft["chains"]}
    assert chains[("gapseal", "output")]["rule_count"] == 8
    assert chains[("gapseal", "audit")]["hook"] is None
    rules = nft["rules"]
    lo, est, enclave, v6, ports, neg, mark, jump = rules
    assert (lo["oifname"], lo["verdict"], lo["unparsed"]) == (["lo"], "accept", False)
    assert est["ct_state"] == ["established", "related"]
    assert [n["cidr"] for n in enclave["daddr"]] == ["10.231.0.0/16"]  # the named set resolved
    assert (enclave["dports"], enclave["comment"], enclave["unparsed"]) == ([22, 443], "enclave", False)
    assert enclave["daddr"][0]["first"] == "0ae70000"
    assert [n["cidr"] for n in v6["daddr"]] == ["fd00::/8"]
    assert ports["dports"] == list(range(1000, 1011))
    assert (neg["negated"], neg["daddr"], neg["verdict"]) == (True, [], "drop")
    assert mark["unparsed"] is True  # meta mark is not understood: said so, not ignored
    assert (jump["verdict"], jump["target"]) == ("jump", "audit")
    assert nft["ruleset"][0]["metainfo"]["json_schema_version"] == 1


def test_live_empty_ruleset(ns: str) -> None:
    facts = collect_in(ns, "collect_firewall(RawStore())")
    assert facts["nftables"]["status"] == "ok"
    assert facts["nftables"]["chains"] == []
    assert facts["nftables"]["output_policy"] == {}


def test_nft_output_without_array_is_rejected() -> None:
    with pytest.raises(ValueError, match='no "nftables" array'):
        parse_nft_ruleset({"rules": []})


def test_iptables_save_parse() -> None:
    text = (
        "# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 23 16:00:00 2026\n"
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [12:720]\n:GAPSEAL - [0:0]\n"
        "-A OUTPUT -o lo -j ACCEPT\n-A OUTPUT -d 10.231.0.0/16 -j GAPSEAL\n-A GAPSEAL -p tcp --dport 22 -j ACCEPT\n"
        "COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
    )
    chains = parse_iptables_save(text, "inet")
    by = {(c.table, c.name): c for c in chains}
    assert by[("filter", "OUTPUT")].policy == "DROP"
    assert by[("filter", "OUTPUT")].rules == ["-A OUTPUT -o lo -j ACCEPT", "-A OUTPUT -d 10.231.0.0/16 -j GAPSEAL"]
    assert by[("filter", "GAPSEAL")].policy is None
    assert by[("nat", "PREROUTING")].rules == []


def test_live_iptables_rules_are_read(ns: str) -> None:
    if shutil.which("iptables") is None:
        pytest.skip("iptables not installed")
    _run("ip", "netns", "exec", ns, "iptables", "-P", "OUTPUT", "DROP")
    facts = collect_in(ns, "collect_firewall(RawStore())")
    ipt = facts["iptables"]
    assert (ipt["status"], ipt["present"]) == ("ok", True)
    out = next(c for c in ipt["chains"] if c["table"] == "filter" and c["name"] == "OUTPUT" and c["family"] == "inet")
    assert out["policy"] == "DROP"


# ------------------------------------------------------------------------------------------------ sockets


@pytest.mark.parametrize(
    ("hex_addr", "text"),
    [
        ("0100007F", "127.0.0.1"),
        ("00000000", ANY4),
        ("0233E70A", "10.231.51.2"),
        ("00000000000000000000000001000000", "::1"),
        ("0000000000000000FFFF00000100007F", "::ffff:127.0.0.1"),
    ],
)
def test_decode_proc_net_address(hex_addr: str, text: str) -> None:
    assert decode_address(hex_addr) == text


@pytest.mark.parametrize(
    ("address", "scope"),
    [(ANY4, "all"), ("::", "all"), ("127.0.0.53", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
     ("10.231.51.2", "specific"), ("::ffff:10.0.0.1", "specific")],
)  # fmt: skip
def test_bind_scope(address: str, scope: str) -> None:
    assert bind_scope(address) == scope


def test_proc_net_udp_connected_sockets_are_not_listening() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "  1: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1001 2 0 0\n"
        "  2: 0233E70A:9C40 0133E70A:0035 01 00000000:00000000 00:00000000 00000000     0        0 1002 2 0 0\n"
    )
    assert parse_proc_net(text, "udp", "inet") == [(ANY4, 53, 1001)]


def test_live_listening_sockets_with_processes(ns: str) -> None:
    """Sockets bound inside the namespace: all-interfaces, loopback and specific, each mapped to its process."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         "import socket, time\n"
         "a = socket.create_server(('0.0.0.0', 8080))\n"
         "b = socket.create_server(('127.0.0.1', 8081))\n"
         "c = socket.create_server(('10.231.51.2', 8082))\n"
         "d = socket.create_server(('::', 8083), family=socket.AF_INET6)\n"
         "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 5353))\n"
         "print('ready', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        facts = collect_in(ns, "collect_sockets(RawStore(), list_processes(Path('/proc'), own_netns(Path('/proc'))))")
    finally:
        server.kill()
        server.wait()
    got = {(s["protocol"], s["address"], s["port"], s["bind_scope"]) for s in facts["listening"]}
    assert got == {
        ("tcp", ANY4, 8080, "all"),
        ("tcp", "127.0.0.1", 8081, "loopback"),
        ("tcp", "10.231.51.2", 8082, "specific"),
        ("tcp", "::", 8083, "all"),
        ("udp", ANY4, 5353, "all"),
    }
    assert {s["port"] for s in facts["exposed"]} == {8080, 8082, 8083, 5353}
    for s in facts["listening"]:
        assert [p["pid"] for p in s["processes"]] == [server.pid], s
        assert s["processes"][0]["comm"].startswith("python")
    assert [s["path"] for s in facts["sources"]] == [f"/proc/net/{n}" for n in ("tcp", "tcp6", "udp", "udp6")]


def test_live_sockets_of_other_namespaces_are_not_reported(ns: str) -> None:
    facts = collect_in(ns, "collect_sockets(RawStore(), list_processes(Path('/proc'), own_netns(Path('/proc'))))")
    assert facts["listening"] == []  # this machine's own listeners (sshd, registries) live in another namespace


def test_neighbour_discovery_accept_is_parsed_not_unparsed() -> None:
    """The installer's ICMPv6 ND rule, as `nft -j` prints it, yields its types instead of 'unparsed'."""
    from gapseal.audit.collectors.firewall import parse_rule

    nd = ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit"]

    def rule(op: str) -> dict[str, Any]:
        icmp = {"op": op, "left": {"payload": {"protocol": "icmpv6", "field": "type"}}, "right": {"set": nd}}
        return {
            "family": "inet",
            "table": "gapseal",
            "chain": "output",
            "handle": 6,
            "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "ipv6-icmp"}},
                {"match": icmp},
                {"accept": None},
            ],
        }

    parsed = parse_rule(rule("=="), {})
    assert parsed.icmpv6_types == nd
    assert parsed.unparsed is False
    assert parsed.verdict == "accept"
    assert parse_rule(rule("!="), {}).unparsed is True  # "any type but ND" cannot be bounded to the link


def _proc_net(root: Path, v4: dict[str, str | None], v6: dict[str, str | None] | None) -> Path:
    """A fake /proc/sys/net: interface -> forwarding file content (None: a directory, so reading it fails)."""
    for version, values in (("ipv4", v4), ("ipv6", v6)):
        for name, text in (values or {}).items():
            d = root / version / "conf" / name
            d.mkdir(parents=True)
            if text is None:
                (d / "forwarding").mkdir()
            else:
                (d / "forwarding").write_text(text)
    return root


OFF = {"all": "0\n", "default": "0\n", "lo": "0\n", "eth0": "0\n"}


@pytest.mark.parametrize(
    ("name", "v4", "v6", "expected"),
    [
        ("everything-off", OFF, OFF, ("ok", False, False, {"inet": [], "inet6": []})),
        (
            "ip-forward-on",
            {**OFF, "all": "1\n", "eth0": "1\n", "lo": "1\n"},
            OFF,
            ("ok", True, False, {"inet": ["eth0"], "inet6": []}),
        ),
        ("one-interface-on", {**OFF, "podman0": "1\n"}, OFF, ("ok", True, False, {"inet": ["podman0"], "inet6": []})),
        ("only-loopback-on", {**OFF, "lo": "1\n"}, OFF, ("ok", False, False, {"inet": [], "inet6": []})),
        ("ipv6-all-on", OFF, {**OFF, "all": "1\n"}, ("ok", False, True, {"inet": [], "inet6": ["eth0"]})),
        ("ipv6-interface-on-all-off", OFF, {**OFF, "eth0": "1\n"}, ("ok", False, False, {"inet": [], "inet6": []})),
        ("unreadable-interface", {**OFF, "eth0": None}, OFF, ("unknown", None, False, {"inet": [], "inet6": []})),
        ("garbage-value", {**OFF, "eth0": "yes\n"}, OFF, ("unknown", None, False, {"inet": [], "inet6": []})),
        ("unreadable-ipv6-all", OFF, {**OFF, "all": None}, ("unknown", False, None, {"inet": [], "inet6": []})),
        ("no-ipv6-in-kernel", OFF, None, ("ok", False, False, {"inet": [], "inet6": []})),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_ip_forwarding_settings(
    tmp_path: Path,
    name: str,
    v4: dict[str, str | None],
    v6: dict[str, str | None] | None,
    expected: tuple[str, bool | None, bool | None, dict[str, list[str]]],
) -> None:
    facts = collect_ip_forwarding(Trace(RawStore()), _proc_net(tmp_path / name, v4, v6))
    assert (facts.status, facts.inet, facts.inet6, facts.interfaces) == expected, facts.reason
    if facts.status == "unknown":
        assert "not readable" in (facts.reason or "")  # an unreadable setting is named, never "off"


def test_ip_forwarding_without_proc_is_unknown(tmp_path: Path) -> None:
    facts = collect_ip_forwarding(Trace(RawStore()), tmp_path / "missing")
    assert (facts.status, facts.inet, facts.inet6) == ("unknown", None, None)
