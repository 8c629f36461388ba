"""Egress probes: can anything leave this host.

By default **no packet is sent**: for each "public" target the kernel is asked for a route (``ip -j route get``) and a
UDP socket is ``connect()``-ed, which only selects a route and a source address. On an isolated host both fail with
ENETUNREACH ("network unreachable"). The defaults are documentation addresses (RFC 5737, RFC 3849), which stand for
"anywhere outside": without a specific route to them, they take the default route if there is one.

Active probes (a TCP handshake, one DNS query) run only against targets the user names (``--probe HOST:PORT``,
``--probe dns://HOST[:PORT]``), by IP address only (resolving a name would itself send packets), with a short
timeout and a bounded count.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import json
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gapseal.audit.collectors._common import RawStore, Trace, family_of
from gapseal.audit.facts import ProbeResult, ProbesFacts
from gapseal.errors import UsageError

DEFAULT_ROUTE_TARGETS = ("203.0.113.1", "198.51.100.1", "2001:db8::1")
"""Documentation addresses standing for "the outside": route lookups only, never a packet."""
UDP_PROBE_PORT = 53
MAX_ACTIVE_PROBES = 16
DEFAULT_TIMEOUT = 2.0
MAX_TIMEOUT = 10.0
DNS_PROBE_NAME = "gapseal-egress-probe.invalid"

_NO_ROUTE_ERRNOS = {
    errno_mod.ENETUNREACH,  # no route at all: the isolated host's answer
    errno_mod.EHOSTUNREACH,  # an "unreachable" route
    errno_mod.EACCES,  # a "prohibit" route
    errno_mod.EPERM,  # a firewall verdict on the local output path
    errno_mod.EINVAL,  # a "blackhole" route
    errno_mod.EAFNOSUPPORT,  # the address family is disabled on this host
    errno_mod.EADDRNOTAVAIL,  # no source address of that family
}
_NO_ROUTE_TYPES = {"unreachable", "blackhole", "prohibit", "throw"}


@dataclass(frozen=True)
class ProbeTarget:
    """An active probe target the user named."""

    kind: Literal["tcp", "dns"]
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"dns://{host}:{self.port}" if self.kind == "dns" else f"{host}:{self.port}"


def parse_probe_target(text: str) -> ProbeTarget:
    """Parse ``HOST:PORT``, ``[V6]:PORT`` or ``dns://HOST[:PORT]``; HOST must be an IP address."""
    kind: Literal["tcp", "dns"] = "tcp"
    rest = text.strip()
    if rest.startswith("dns://"):
        kind, rest = "dns", rest[6:]
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep:
            raise UsageError(f"probe target {text!r}: missing ']' after an IPv6 address")
        port_text = tail[1:] if tail.startswith(":") else ("" if not tail else None)
        if port_text is None:
            raise UsageError(f"probe target {text!r}: expected ':PORT' after ']'")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    elif rest.count(":") > 1:
        raise UsageError(f"probe target {text!r}: write IPv6 addresses in brackets, e.g. [2001:db8::1]:443")
    else:
        host, port_text = rest, ""
    if not port_text:
        if kind != "dns":
            raise UsageError(f"probe target {text!r}: a TCP probe needs a port (HOST:PORT)")
        port_text = "53"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"probe target {text!r}: {host!r} is not an IP address",
            hint="give an address: resolving a name would itself send DNS packets off the host",
        ) from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"probe target {text!r}: port must be 1-65535")
    return ProbeTarget(kind=kind, host=host, port=int(port_text))


def _errno_name(code: int | None) -> str | None:
    return errno_mod.errorcode.get(code) if code is not None else None


def route_probe(address: str, trace: Trace) -> ProbeResult:
    """Ask the kernel for a route to ``address`` (``ip -j route get``); sends nothing."""
    fam = family_of(address)
    out = trace.run(["ip", "-6" if fam == "inet6" else "-4", "-j", "route", "get", address])
    base = {"kind": "route", "target": address, "family": fam, "active": False}
    if out.exit_code is None:
        return ProbeResult(**base, outcome="error", egress_possible=False, detail=out.error)
    if not out.ok:
        err = out.stderr.decode("utf-8", errors="replace").strip()
        low = err.lower()
        if (
            "unreachable" in low
            or "permission denied" in low
            or "no route" in low
            or "invalid argument" in low
            or "not supported" in low
        ):
            return ProbeResult(**base, outcome="no_route", egress_possible=False, detail=err)
        return ProbeResult(**base, outcome="error", egress_possible=False, detail=err or out.error)
    try:
        routes = json.loads(out.stdout)
        r = routes[0] if isinstance(routes, list) and routes else {}
    except ValueError:
        return ProbeResult(**base, outcome="error", egress_possible=False, detail="unparseable ip -j route get output")
    rtype = str(r.get("type", "unicast"))
    detail = " ".join(f"{k} {r[k]}" for k in ("type", "dev", "gateway", "prefsrc", "table") if r.get(k) is not None)
    if rtype in _NO_ROUTE_TYPES:
        return ProbeResult(**base, outcome="no_route", egress_possible=False, detail=detail)
    if r.get("dev") == "lo":
        return ProbeResult(**base, outcome="no_route", egress_possible=False, detail=f"local delivery: {detail}")
    gateway = str(r["gateway"]) if r.get("gateway") else None
    return ProbeResult(**base, outcome="routed", egress_possible=True, detail=detail, gateway=gateway)


def udp_connect_probe(address: str, port: int = UDP_PROBE_PORT) -> ProbeResult:
    """``connect()`` a UDP socket to ``address``: the kernel picks a route and source address; no packet is sent."""
    fam = family_of(address)
    base = {"kind": "udp_connect", "target": f"[{address}]:{port}" if fam == "inet6" else f"{address}:{port}",
            "family": fam, "active": False}  # fmt: skip
    af = socket.AF_INET6 if fam == "inet6" else socket.AF_INET
    try:
        with socket.socket(af, socket.SOCK_DGRAM) as s:
            s.connect((address, port))
            src = s.getsockname()[0]
    except OSError as e:
        if e.errno in _NO_ROUTE_ERRNOS:
            return ProbeResult(**base, outcome="no_route", egress_possible=False, detail=os.strerror(e.errno or 0),
                               errno=_errno_name(e.errno))  # fmt: skip
        return ProbeResult(**base, outcome="error", egress_possible=False, detail=str(e), errno=_errno_name(e.errno))
    ip = ipaddress.ip_address(src)
    if ip.is_loopback:
        return ProbeResult(**base, outcome="no_route", egress_possible=False, detail=f"source {src}: local delivery")
    return ProbeResult(**base, outcome="routed", egress_possible=True, detail=f"source {src}")


def tcp_probe(target: ProbeTarget, timeout: float) -> ProbeResult:
    """Try a TCP handshake with ``target`` (sends packets: only for user-named targets)."""
    fam = family_of(target.host)
    base = {"kind": "tcp_connect", "target": str(target), "family": fam, "active": True}
    af = socket.AF_INET6 if fam == "inet6" else socket.AF_INET
    with socket.socket(af, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((target.host, target.port))
        except TimeoutError:
            return ProbeResult(**base, outcome="timeout", egress_possible=False, detail=f"no answer in {timeout:g}s")
        except ConnectionRefusedError as e:
            return ProbeResult(**base, outcome="refused", egress_possible=True, detail="connection refused (RST)",
                               errno=_errno_name(e.errno))  # fmt: skip
        except OSError as e:
            return _socket_failure(base, e)
    return ProbeResult(**base, outcome="connected", egress_possible=True, detail="TCP handshake completed")


def _socket_failure(base: dict[str, Any], e: OSError) -> ProbeResult:
    """An active probe's socket error: no route (nothing left the host) or another error."""
    if e.errno in _NO_ROUTE_ERRNOS:
        return ProbeResult(**base, outcome="no_route", egress_possible=False,
                           detail=os.strerror(e.errno or 0), errno=_errno_name(e.errno))  # fmt: skip
    return ProbeResult(**base, outcome="error", egress_possible=False, detail=str(e), errno=_errno_name(e.errno))


def dns_query_packet(name: str = DNS_PROBE_NAME, query_id: int = 0x6770) -> bytes:
    """Build a minimal DNS query (RFC 1035): one question, type A, class IN, recursion desired."""
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\0"
    return header + qname + struct.pack(">HH", 1, 1)


def dns_probe(target: ProbeTarget, timeout: float) -> ProbeResult:
    """Send one DNS query to ``target`` and wait for any reply (only for user-named targets)."""
    fam = family_of(target.host)
    base = {"kind": "dns", "target": str(target), "family": fam, "active": True}
    af = socket.AF_INET6 if fam == "inet6" else socket.AF_INET
    packet = dns_query_packet()
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((target.host, target.port))
            s.send(packet)
            reply = s.recv(4096)
        except TimeoutError:
            return ProbeResult(**base, outcome="timeout", egress_possible=False, detail=f"no reply in {timeout:g}s")
        except ConnectionRefusedError as e:
            return ProbeResult(**base, outcome="refused", egress_possible=True, detail="ICMP port unreachable",
                               errno=_errno_name(e.errno))  # fmt: skip
        except OSError as e:
            return _socket_failure(base, e)
    if len(reply) >= 2 and reply[:2] == packet[:2]:
        return ProbeResult(**base, outcome="answered", egress_possible=True, detail=f"{len(reply)}-byte DNS reply")
    return ProbeResult(**base, outcome="answered", egress_possible=True, detail=f"{len(reply)}-byte non-matching reply")


def _with_gateway(result: ProbeResult, gateway: str | None) -> ProbeResult:
    """``result`` with the next hop the route lookup found for its target (when it showed a path)."""
    return result.model_copy(update={"gateway": gateway}) if result.egress_possible and gateway else result


def run_probes(
    store: RawStore,
    *,
    route_targets: Sequence[str] = DEFAULT_ROUTE_TARGETS,
    active: Sequence[ProbeTarget] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> ProbesFacts:
    """Run the passive probes for ``route_targets`` and the active probes for ``active``."""
    if len(active) > MAX_ACTIVE_PROBES:
        raise UsageError(f"at most {MAX_ACTIVE_PROBES} active probe targets, got {len(active)}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise UsageError(f"probe timeout must be in (0, {MAX_TIMEOUT:g}] seconds, got {timeout:g}")
    trace = Trace(store)
    results: list[ProbeResult] = []
    gateways: dict[str, str | None] = {}  # target address -> next hop, from the route lookup (sends nothing)
    for addr in route_targets:
        route = route_probe(addr, trace)
        gateways[addr] = route.gateway
        results.append(route)
        results.append(_with_gateway(udp_connect_probe(addr), route.gateway))
    for t in active:
        if t.host not in gateways:
            gateways[t.host] = route_probe(t.host, trace).gateway
        result = dns_probe(t, timeout) if t.kind == "dns" else tcp_probe(t, timeout)
        results.append(_with_gateway(result, gateways[t.host]))
    errors = [r for r in results if r.outcome == "error" and not r.active]
    status = "unknown" if errors and len(errors) == 2 * len(route_targets) else "ok"
    return ProbesFacts(
        status=status,
        reason=f"no passive probe could run: {errors[0].detail}" if status == "unknown" else None,
        sources=trace.sources,
        probes=results,
        egress_possible=any(r.egress_possible for r in results),
        active_targets=[str(t) for t in active],
    )
