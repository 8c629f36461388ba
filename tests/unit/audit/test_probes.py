"""Egress probes: target parsing, the no-packet route probes in a fresh network namespace, active probes on loopback
and on a namespace address this test creates (10.231.50.0/30). No other address is ever contacted."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.probes import (
    DEFAULT_ROUTE_TARGETS,
    MAX_ACTIVE_PROBES,
    ProbeTarget,
    dns_probe,
    parse_probe_target,
    run_probes,
    tcp_probe,
)
from gapseal.errors import UsageError

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)

NS_PREFIX = "10.231.50"
ROOT_SIDE = f"{NS_PREFIX}.1"
NS_SIDE = f"{NS_PREFIX}.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def isolated_ns() -> Iterator[str]:
    """A fresh network namespace with only ``lo`` up: no route anywhere."""
    name = f"gs-probe-iso-{os.getpid()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def peer_ns() -> Iterator[str]:
    """A namespace joined to this one by a veth pair: root side 10.231.50.1/30, namespace side 10.231.50.2/30."""
    name = f"gs-probe-peer-{os.getpid()}"
    veth = f"gsp{os.getpid() % 100000}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", f"{veth}a", "type", "veth", "peer", "name", f"{veth}b", "netns", name)
        _ip("addr", "add", f"{ROOT_SIDE}/30", "dev", f"{veth}a")
        _ip("link", "set", f"{veth}a", "up")
        _ip("-n", name, "addr", "add", f"{NS_SIDE}/30", "dev", f"{veth}b")
        _ip("-n", name, "link", "set", f"{veth}b", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", f"{veth}a"], check=False, capture_output=True)  # the pair, now
        subprocess.run(["ip", "netns", "del", name], check=False)


def _in_ns(ns: str, code: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    return proc.stdout


# ------------------------------------------------------------------------------------------------ target parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.231.50.2:443", ProbeTarget("tcp", "10.231.50.2", 443)),
        ("[2001:db8::1]:22", ProbeTarget("tcp", "2001:db8::1", 22)),
        ("dns://10.231.50.2", ProbeTarget("dns", "10.231.50.2", 53)),
        ("dns://[::1]:5353", ProbeTarget("dns", "::1", 5353)),
    ],
)
def test_parse_probe_target(text: str, expected: ProbeTarget) -> None:
    assert parse_probe_target(text) == expected
    assert parse_probe_target(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("example.com:443", "'example.com' is not an IP address"),
        ("10.0.0.1", "a TCP probe needs a port"),
        ("10.0.0.1:0", "port must be 1-65535"),
        ("10.0.0.1:70000", "port must be 1-65535"),
        ("2001:db8::1:443", "write IPv6 addresses in brackets"),
        ("[2001:db8::1:443", "missing ']'"),
        ("dns://resolver.internal", "is not an IP address"),
    ],
    ids=["hostname", "no-port", "port-zero", "port-too-big", "v6-no-brackets", "v6-open-bracket", "dns-hostname"],
)
def test_parse_probe_target_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_probe_target(text)
    assert message in e.value.message
    assert e.value.exit_code == 2


def test_active_probe_count_is_bounded() -> None:
    targets = [ProbeTarget("tcp", "127.0.0.1", 1000 + i) for i in range(MAX_ACTIVE_PROBES + 1)]
    with pytest.raises(UsageError, match=f"at most {MAX_ACTIVE_PROBES} active probe targets"):
        run_probes(RawStore(), active=targets)


@pytest.mark.parametrize("timeout", [0.0, -1.0, 11.0])
def test_probe_timeout_is_bounded(timeout: float) -> None:
    with pytest.raises(UsageError, match="probe timeout must be in"):
        run_probes(RawStore(), timeout=timeout)


# ------------------------------------------------------------------------------------------------ passive probes


def test_isolated_namespace_has_no_route_anywhere(isolated_ns: str) -> None:
    """Only lo up: every route lookup and UDP connect() fails with ENETUNREACH; no packet is sent."""
    out = _in_ns(
        isolated_ns,
        "from gapseal.audit.probes import run_probes\n"
        "from gapseal.audit.collectors._common import RawStore\n"
        "print(run_probes(RawStore()).model_dump_json())",
    )
    facts = json.loads(out)
    assert facts["status"] == "ok"
    assert facts["egress_possible"] is False
    assert [p["target"] for p in facts["probes"] if p["kind"] == "route"] == list(DEFAULT_ROUTE_TARGETS)
    for p in facts["probes"]:
        assert p["outcome"] == "no_route", p
        assert p["active"] is False
        if p["kind"] == "udp_connect":
            assert p["errno"] == "ENETUNREACH"
        else:
            assert "unreachable" in p["detail"].lower()
    route_sources = [s for s in facts["sources"] if s["argv"][:3] in (["ip", "-4", "-j"], ["ip", "-6", "-j"])]
    assert len(route_sources) == 3
    assert all(s["exit_code"] == 2 for s in route_sources)


def test_default_route_makes_egress_possible(isolated_ns: str) -> None:
    """A default route via a namespace-local link: route lookups now succeed (still no packet sent)."""
    dummy = "gsveth0"  # a veth pair with both ends inside the namespace: no packet can reach this host
    _ip("-n", isolated_ns, "link", "add", dummy, "type", "veth", "peer", "name", "gsveth1")
    try:
        _ip("-n", isolated_ns, "addr", "add", "10.231.50.9/30", "dev", dummy)
        _ip("-n", isolated_ns, "link", "set", dummy, "up")
        _ip("-n", isolated_ns, "route", "add", "default", "via", "10.231.50.10", "dev", dummy)
        out = _in_ns(
            isolated_ns,
            "from gapseal.audit.probes import run_probes\n"
            "from gapseal.audit.collectors._common import RawStore\n"
            "print(run_probes(RawStore(), route_targets=['203.0.113.1']).model_dump_json())",
        )
    finally:
        subprocess.run(["ip", "-n", isolated_ns, "link", "del", dummy], check=False)
    facts = json.loads(out)
    assert facts["egress_possible"] is True
    route, udp = facts["probes"]
    assert route["outcome"] == "routed"
    assert f"dev {dummy}" in route["detail"]
    assert "gateway 10.231.50.10" in route["detail"]
    assert udp["outcome"] == "routed"
    assert udp["detail"] == "source 10.231.50.9"


def test_unreachable_and_blackhole_routes_count_as_no_route(isolated_ns: str) -> None:
    _ip("-n", isolated_ns, "route", "add", "unreachable", "203.0.113.0/24")
    _ip("-n", isolated_ns, "route", "add", "blackhole", "198.51.100.0/24")
    try:
        out = _in_ns(
            isolated_ns,
            "from gapseal.audit.probes import run_probes\n"
            "from gapseal.audit.collectors._common import RawStore\n"
            "print(run_probes(RawStore(), route_targets=['203.0.113.1', '198.51.100.1']).model_dump_json())",
        )
    finally:
        subprocess.run(["ip", "-n", isolated_ns, "route", "del", "unreachable", "203.0.113.0/24"], check=False)
        subprocess.run(["ip", "-n", isolated_ns, "route", "del", "blackhole", "198.51.100.0/24"], check=False)
    facts = json.loads(out)
    assert facts["egress_possible"] is False
    assert [p["outcome"] for p in facts["probes"]] == ["no_route"] * 4
    errnos = {p["target"]: p["errno"] for p in facts["probes"] if p["kind"] == "udp_connect"}
    assert errnos == {"203.0.113.1:53": "EHOSTUNREACH", "198.51.100.1:53": "EINVAL"}


# ------------------------------------------------------------------------------------------------ active probes


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield port
    finally:
        stop.set()
        t.join()
        srv.close()


def test_tcp_probe_loopback_listener_connects(loopback_listener: int) -> None:
    r = tcp_probe(ProbeTarget("tcp", "127.0.0.1", loopback_listener), timeout=2)
    assert r.outcome == "connected"
    assert r.egress_possible is True
    assert r.active is True


def test_tcp_probe_closed_loopback_port_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: the kernel answers RST
        r = tcp_probe(ProbeTarget("tcp", "127.0.0.1", port), timeout=2)
    assert r.outcome == "refused"
    assert r.errno == "ECONNREFUSED"
    assert r.egress_possible is True  # a RST came back: the path exists


def _serve_in_ns(ns: str, code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_active_probes_against_a_namespace_host(peer_ns: str) -> None:
    """TCP connect, refused port, DNS reply and a dropped port (timeout) on 10.231.50.2, all from this namespace."""
    server = _serve_in_ns(
        peer_ns,
        "import socket, threading\n"
        f"t = socket.create_server(('{NS_SIDE}', 8443))\n"
        f"u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('{NS_SIDE}', 5353))\n"
        "def dns():\n"
        "    while True:\n"
        "        data, peer = u.recvfrom(512)\n"
        "        u.sendto(data[:2] + b'\\x81\\x83' + data[4:], peer)\n"
        "threading.Thread(target=dns, daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    c, _ = t.accept(); c.close()\n",
    )
    _ip("netns", "exec", peer_ns, "nft", "add", "table", "inet", "gsprobe")
    _ip("netns", "exec", peer_ns, "nft", "add", "chain", "inet", "gsprobe", "in",
        "{ type filter hook input priority 0 ; policy accept ; }")  # fmt: skip
    _ip("netns", "exec", peer_ns, "nft", "add", "rule", "inet", "gsprobe", "in", "tcp", "dport", "9999", "drop")
    try:
        targets = [
            parse_probe_target(f"{NS_SIDE}:8443"),
            parse_probe_target(f"{NS_SIDE}:8444"),
            parse_probe_target(f"dns://{NS_SIDE}:5353"),
            parse_probe_target(f"{NS_SIDE}:9999"),
        ]
        facts = run_probes(RawStore(), route_targets=[], active=targets, timeout=0.5)
    finally:
        server.kill()
        server.wait()
    outcomes = {p.target: (p.kind, p.outcome, p.egress_possible) for p in facts.probes}
    assert outcomes == {
        f"{NS_SIDE}:8443": ("tcp_connect", "connected", True),
        f"{NS_SIDE}:8444": ("tcp_connect", "refused", True),
        f"dns://{NS_SIDE}:5353": ("dns", "answered", True),
        f"{NS_SIDE}:9999": ("tcp_connect", "timeout", False),
    }
    assert facts.egress_possible is True
    assert facts.active_targets == [str(t) for t in targets]


def test_dns_probe_without_server_is_refused_not_answered(peer_ns: str) -> None:
    r = dns_probe(ProbeTarget("dns", NS_SIDE, 5354), timeout=0.5)
    assert r.outcome == "refused"  # ICMP port unreachable came back: the host is reachable
    assert r.egress_possible is True


def test_cli_runs_no_active_probe_without_probe_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gapseal.cli import main

    assert main(["audit", "collect", "--root", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["probes"]["active_targets"] == []
    assert all(p["active"] is False for p in doc["probes"]["probes"])
    assert {p["kind"] for p in doc["probes"]["probes"]} == {"route", "udp_connect"}
