"""Facts documents for policy tests: a compliant, locked-down host built through the real facts schema, and leaks.

Every builder returns the JSON form (``HostFacts.model_dump(mode="json")``) of a document that validates against
``gapseal.audit.facts.HostFacts``; ``facts_bytes`` gives the bytes ``gapseal audit evaluate`` reads.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import json
from collections.abc import Callable
from typing import Any

from gapseal.audit.facts import HostFacts

NOW = dt.datetime(2026, 11, 23, 16, 0, 0, tzinfo=dt.UTC)
DOCUMENTATION = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")


def network(cidr: str) -> dict[str, Any]:
    """A facts ``Network`` for ``cidr``, with hex bounds and an address class, as the collectors write it."""
    net = ipaddress.ip_network(cidr, strict=False)
    width = 8 if net.version == 4 else 32
    first = net.network_address
    if first.is_unspecified:
        klass = "unspecified"
    elif first.is_loopback:
        klass = "loopback"
    elif first.is_link_local:
        klass = "link_local"
    elif first.is_multicast:
        klass = "multicast"
    elif any(first in ipaddress.ip_network(d) for d in DOCUMENTATION):
        klass = "documentation"
    elif first.is_private:
        klass = "private"
    else:
        klass = "global"
    return {
        "cidr": str(net),
        "family": "inet" if net.version == 4 else "inet6",
        "prefixlen": net.prefixlen,
        "first": format(int(net.network_address), f"0{width}x"),
        "last": format(int(net.broadcast_address), f"0{width}x"),
        "address_class": klass,
    }


def route(cidr: str, *, dev: str = "veth1", gateway: str | None = None) -> dict[str, Any]:
    """A forwarding unicast route in table main."""
    dst = network(cidr)
    return {
        "family": dst["family"],
        "table": "main",
        "type": "unicast",
        "dst": dst,
        "is_default": dst["prefixlen"] == 0,
        "gateway": gateway,
        "dev": dev,
        "protocol": "kernel",
        "scope": "link",
        "prefsrc": None,
        "metric": None,
        "forwards": True,
    }


def nft_rule(chain: str, verdict: str, *, handle: int, daddr: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """An extracted nftables rule in table inet gapseal."""
    rule: dict[str, Any] = {
        "family": "inet",
        "table": "gapseal",
        "chain": chain,
        "handle": handle,
        "verdict": verdict,
        "target": None,
        "daddr": [network(d) for d in daddr],
        "saddr": [],
        "dports": [],
        "oifname": [],
        "iifname": [],
        "ct_state": [],
        "negated": False,
        "unparsed": False,
        "comment": None,
    }
    rule.update(extra)
    return rule


def output_chain(rule_count: int) -> dict[str, Any]:
    """The lockdown's output base chain (policy drop)."""
    return {
        "family": "inet",
        "table": "gapseal",
        "name": "output",
        "type": "filter",
        "hook": "output",
        "priority": 0,
        "policy": "drop",
        "rule_count": rule_count,
    }


def _ok(**fields: Any) -> dict[str, Any]:
    return {"status": "ok", "reason": None, "sources": [], **fields}


def compliant_facts(host: str = "host1") -> dict[str, Any]:
    """A host installed and locked down: no default route, output dropped, keys-only sshd, telemetry off."""
    enclave_route = route("10.231.1.0/30")
    rules = [
        nft_rule("output", "accept", handle=2, oifname=["lo"]),
        nft_rule("output", "accept", handle=3, ct_state=["established", "related"]),
        nft_rule("output", "accept", handle=4, daddr=("10.231.1.0/30",), dports=[22]),
    ]
    document: dict[str, Any] = {
        "kind": "gapseal.audit.facts",
        "schema_version": 1,
        "collected_at": NOW.isoformat(),
        "collector": {"tool": "gapseal", "version": "0.1.0"},
        "host": {"hostname": host, "root": "/", "netns": "net:[4026532000]", "kernel": "6.1.0", "machine_id": None},
        "routes": _ok(
            routes=[enclave_route],
            rules=[],
            default_routes=[],
            forwarding_routes=[enclave_route],
            ip_forwarding=ip_forwarding(inet=False),
        ),
        "firewall": _ok(
            nftables={
                "status": "ok",
                "reason": None,
                "present": True,
                "chains": [output_chain(len(rules))],
                "rules": rules,
                "output_policy": {"inet": "drop"},
                "ruleset": [{"metainfo": {"json_schema_version": 1}}],
            },
            iptables={"status": "ok", "reason": None, "present": False, "chains": []},
            egress=egress_facts(),
            forward=egress_facts(path="forward"),
        ),
        "dns": _ok(
            resolv_conf_present=True,
            nameservers=[{"address": "127.0.0.53", "address_class": "loopback", "origin": "resolv.conf"}],
            nsswitch_hosts=["files", "dns"],
            resolved={"present": False, "settings": {}},
        ),
        "processes": _ok(netns="net:[4026532000]", scanned=12, inference=[]),
        "proxy": _ok(settings=[], proxies=[]),
        "sockets": _ok(
            listening=[socket("10.231.1.2", "private", "specific", 22, "sshd")],
            exposed=[socket("10.231.1.2", "private", "specific", 22, "sshd")],
        ),
        "probes": _ok(
            probes=[
                {
                    "kind": "route",
                    "target": "203.0.113.1",
                    "family": "inet",
                    "active": False,
                    "outcome": "no_route",
                    "egress_possible": False,
                    "detail": "RTNETLINK answers: Network is unreachable",
                    "errno": "ENETUNREACH",
                }
            ],
            egress_possible=False,
            active_targets=[],
        ),
        "telemetry": _ok(services=[vllm(satisfied=True)], violations=[]),
        "storage": _ok(
            mounts=[],
            block_devices=[],
            block_devices_status="ok",
            paths=[path_storage("/srv/gapseal/models", "model")],
        ),
        "integrity": _ok(
            record_path="/var/lib/gapseal/installed.json",
            record_present=True,
            files=[
                {
                    "path": "models/minilm/model.safetensors",
                    "expected_sha256": "aa" * 32,
                    "expected_size": 10,
                    "actual_sha256": "aa" * 32,
                    "actual_size": 10,
                    "state": "ok",
                }
            ],
            checked=1,
            ok=1,
            failures=[],
        ),
        "ssh": _ok(
            present=True,
            method="sshd -T",
            password_authentication="no",
            permit_root_login="prohibit-password",
            pubkey_authentication="yes",
            kbd_interactive_authentication="no",
            permit_empty_passwords="no",
            listen_addresses=["10.231.1.2:22"],
            ports=[22],
            forwarding=[ssh_forwarding("global", {"disableforwarding": "yes", "permittunnel": "no"})],
        ),
        "logging": _ok(
            journald={"present": True, "storage": "persistent", "persistent": True, "max_retention_sec": None},
            auditd={"present": False},
        ),
        "package_sources": _ok(entries=[package_source("apt", "source", "file:/srv/debian", local=True)]),
        "time": _ok(daemons=["chrony"], servers=[time_server("chrony", "server", "10.231.1.1")]),
        "datapath": _ok(
            netns="net:[4026531840]",
            initial_netns="net:[4026531840]",
            interfaces=[netlink("lo", None, link_type="loopback"), netlink("veth1", None)],
            bridge_netfilter={"loaded": False},
            namespaces=[
                {
                    "netns": "net:[4026532500]",
                    "pids": [41],
                    "comms": ["vllm"],
                    "attached": True,
                    "interfaces": [netlink("lo", None, link_type="loopback")],
                }
            ],
        ),
        "raw_outputs": {},
    }
    return HostFacts.model_validate(document).model_dump(mode="json")


def netlink(name: str, kind: str | None, *, link_type: str = "ether", **fields: Any) -> dict[str, Any]:
    """One interface of ``ip -j -d link show`` as the datapath collector records it."""
    return {"name": name, "ifindex": 2, "kind": kind, "link_type": link_type, **fields}


def ssh_forwarding(context: str, settings: dict[str, str]) -> dict[str, Any]:
    """One sshd forwarding context, decided by the collector's own rule (gapseal.audit.collectors.ssh.forwarding)."""
    from gapseal.audit.collectors.ssh import forwarding

    return forwarding(context, "sshd -T", settings).model_dump(mode="json")


def package_source(manager: str, kind: str, value: str, *, local: bool = False) -> dict[str, Any]:
    """One package/container source as the collector writes it (host parsed by its own ``endpoint``)."""
    from gapseal.audit.collectors.package_sources import endpoint

    host, port, hostport, _ = endpoint(value)
    net = network(f"{host}/32") if host and host.replace(".", "").isdigit() else None
    return {
        "manager": manager,
        "kind": kind,
        "value": value,
        "host": host,
        "port": port,
        "hostport": hostport,
        "network": net,
        "local": local,
        "location": "/etc/apt/sources.list:1",
    }


def time_server(daemon: str, directive: str, address: str) -> dict[str, Any]:
    """One configured time server."""
    net = network(f"{address}/32") if address.replace(".", "").isdigit() else None
    return {
        "daemon": daemon,
        "directive": directive,
        "address": address,
        "network": net,
        "local": False,
        "location": "/etc/chrony/chrony.conf:1",
    }


def socket(address: str, klass: str, scope: str, port: int, comm: str) -> dict[str, Any]:
    """A listening TCP socket held by one process."""
    return {
        "protocol": "tcp",
        "family": "inet6" if ":" in address else "inet",
        "address": address,
        "port": port,
        "bind_scope": scope,
        "address_class": klass,
        "inode": 1000 + port,
        "processes": [{"pid": 100 + port, "comm": comm, "exe": None}],
    }


def vllm(*, satisfied: bool) -> dict[str, Any]:
    """A vLLM process with (or without) its usage-statistics switch."""
    return {
        "service": "vllm",
        "origin": "process",
        "location": "pid:31",
        "environment_known": True,
        "requirements": [
            {
                "service": "vllm",
                "purpose": "usage statistics",
                "any_of": [
                    {
                        "variable": "VLLM_NO_USAGE_STATS",
                        "expected": "1",
                        "value": "1" if satisfied else None,
                        "satisfied": satisfied,
                    },
                    {"variable": "DO_NOT_TRACK", "expected": "1", "value": None, "satisfied": False},
                ],
                "satisfied": satisfied,
            }
        ],
        "telemetry_disabled": satisfied,
    }


def path_storage(path: str, role: str, *, remote: bool = False, encryption: str = "encrypted") -> dict[str, Any]:
    """The storage behind a model/data path."""
    return {
        "path": path,
        "role": role,
        "exists": True,
        "mount_point": "/srv",
        "fstype": "nfs4" if remote else "ext4",
        "source": "files:/export" if remote else "/dev/mapper/srv",
        "kind": "network" if remote else "local_block",
        "remote": remote,
        "encryption": encryption,
        "device_chain": ["srv", "vda2", "vda"],
        "reason": None,
    }


# ------------------------------------------------------------------------------------------------- leaks


def _default_route(d: dict[str, Any]) -> None:
    r = route("0.0.0.0/0", gateway="10.231.1.1")
    d["routes"]["routes"].append(r)
    d["routes"]["default_routes"].append(r)
    d["routes"]["forwarding_routes"].append(r)


def _proxy(d: dict[str, Any]) -> None:
    setting = {
        "variable": "HTTPS_PROXY",
        "name": "https_proxy",
        "value": "http://proxy.example:3128",
        "is_exclusion": False,
        "origin": "etc_environment",
        "location": "/etc/environment:1",
    }
    d["proxy"]["settings"].append(setting)
    d["proxy"]["proxies"].append(setting)


def _listen_all(d: dict[str, Any]) -> None:
    s = socket("0.0.0.0", "unspecified", "all", 8000, "vllm")  # noqa: S104 - a fact, nothing binds
    d["sockets"]["listening"].append(s)
    d["sockets"]["exposed"].append(s)


def _telemetry(d: dict[str, Any]) -> None:
    d["telemetry"]["services"] = [vllm(satisfied=False)]
    d["telemetry"]["violations"] = ["vllm@pid:31: usage statistics"]


def _altered_file(d: dict[str, Any]) -> None:
    f = d["integrity"]["files"][0]
    f.update(actual_sha256="bb" * 32, state="modified")
    d["integrity"].update(ok=0, failures=[f"modified: {f['path']}"])


def _accept_public(d: dict[str, Any]) -> None:
    nft = d["firewall"]["nftables"]
    nft["rules"].append(nft_rule("output", "accept", handle=9, daddr=("203.0.113.0/24",)))
    d["firewall"]["egress"] = egress_facts(extra_public_accept=True)


def ip_forwarding(*, inet: bool | None) -> dict[str, Any]:
    """routes.ip_forwarding with IPv4 forwarding ``inet`` on veth1 (IPv6 off)."""
    value = None if inet is None else int(inet)
    proc = "/proc/sys/net"
    return {
        "status": "ok" if inet is not None else "unknown",
        "reason": None if inet is not None else "/proc/sys/net/ipv4/conf/veth1/forwarding: not readable",
        "inet": inet,
        "inet6": False,
        "interfaces": {"inet": ["veth1"] if inet else [], "inet6": []},
        "settings": [
            {"family": "inet", "interface": "veth1", "path": f"{proc}/ipv4/conf/veth1/forwarding", "value": value},
            {"family": "inet6", "interface": "all", "path": f"{proc}/ipv6/conf/all/forwarding", "value": 0},
        ],
    }


def egress_facts(
    extra_public_accept: bool = False, path: str = "output", forward_policy: str = "drop"
) -> dict[str, Any]:
    """firewall.egress as gapseal's evaluator answers for the lockdown (plus an accept to 203.0.113.0/24).

    ``path="forward"``: firewall.forward for the same lockdown plus a forward chain with ``forward_policy``.
    """
    from gapseal.audit import netfilter
    from gapseal.audit.collectors.firewall import egress_answers

    def match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
        return {"match": {"op": op, "left": left, "right": right}}

    daddr = {"payload": {"protocol": "ip", "field": "daddr"}}
    exprs = [
        [match({"meta": {"key": "oifname"}}, "lo"), {"accept": None}],
        [match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
        [match(daddr, {"prefix": {"addr": "10.231.1.0", "len": 30}}),
         match({"payload": {"protocol": "tcp", "field": "dport"}}, 22), {"accept": None}],
    ]  # fmt: skip
    if extra_public_accept:
        exprs.append([match(daddr, {"prefix": {"addr": "203.0.113.0", "len": 24}}), {"accept": None}])
    items: list[dict[str, Any]] = [
        {"table": {"family": "inet", "name": "gapseal"}},
        {"chain": {"family": "inet", "table": "gapseal", "name": "output", "type": "filter", "hook": "output",
                   "prio": 0, "policy": "drop"}},
    ]  # fmt: skip
    items += [{"rule": {"family": "inet", "table": "gapseal", "chain": "output", "handle": i + 2, "expr": e}}
              for i, e in enumerate(exprs)]  # fmt: skip
    base_chains = ["nftables inet gapseal output: hook output priority 0 policy drop"]
    items.append({"chain": {"family": "inet", "table": "gapseal", "name": "forward", "type": "filter",
                            "hook": "forward", "prio": 0, "policy": forward_policy}})  # fmt: skip
    base_chains.append(f"nftables inet gapseal forward: hook forward priority 0 policy {forward_policy}")
    ruleset = netfilter.build_ruleset(nft_json={"nftables": items})
    if path == "forward":
        ruleset = ruleset.forward()
    return {
        "status": "ok",
        "reason": None,
        "base_chains": base_chains,
        "notes": [],
        "probes": [
            a.model_dump(mode="json") for a in egress_answers(netfilter.probe_verdicts(ruleset, ["203.0.113.1"]))
        ],
        "classes": [a.model_dump(mode="json") for a in egress_answers(netfilter.egress_classes(ruleset))],
    }


def _ssh_forwarding(d: dict[str, Any]) -> None:
    d["ssh"]["forwarding"].append(ssh_forwarding("Match User ops", {"allowtcpforwarding": "yes"}))


def _apt_outside(d: dict[str, Any]) -> None:
    d["package_sources"]["entries"].append(package_source("apt", "source", "http://deb.debian.org/debian"))


def _ntp_pool(d: dict[str, Any]) -> None:
    d["time"]["servers"].append(time_server("chrony", "pool", "2.debian.pool.ntp.org"))


def _forwarding_open(d: dict[str, Any]) -> None:
    d["routes"]["ip_forwarding"] = ip_forwarding(inet=True)
    d["firewall"]["forward"] = egress_facts(path="forward", forward_policy="accept")


def _macvlan_namespace(d: dict[str, Any]) -> None:
    ns = d["datapath"]["namespaces"][0]
    ns["interfaces"].append(netlink("mv0", "macvlan", peer_netns="net:[4026531840]"))
    ns["ways_out"] = ["mv0 (macvlan on a device of net:[4026531840])"]


def _bridged_uplink(d: dict[str, Any]) -> None:
    d["datapath"]["bridges"] = [{"name": "br0", "ports": ["veth1", "veth2"], "uplink_ports": ["veth1"],
                                 "other_ports": ["veth2"]}]  # fmt: skip


def _packet_socket(d: dict[str, Any]) -> None:
    holder = {"pid": 612, "comm": "dhclient", "exe": "/usr/sbin/dhclient"}
    d["datapath"]["packet_sockets"] = [
        {"inode": 23817, "type": "raw", "protocol": "0003", "interface": "veth1", "processes": [holder]}
    ]


def _routes_unknown(d: dict[str, Any]) -> None:
    d["routes"] = {"status": "unknown", "reason": "ip: command not found", "sources": []}


LEAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "default_route": (_default_route, "EGRESS-001"),
    "proxy_variable": (_proxy, "EGRESS-006"),
    "listen_all": (_listen_all, "ACCESS-003"),
    "telemetry_on": (_telemetry, "TELEMETRY-001"),
    "altered_file": (_altered_file, "INTEGRITY-002"),
    "accept_public": (_accept_public, "EGRESS-004"),
    "routes_unknown": (_routes_unknown, "EGRESS-001"),
    "ssh_forwarding": (_ssh_forwarding, "ACCESS-004"),
    "apt_outside": (_apt_outside, "EGRESS-010"),
    "ntp_pool": (_ntp_pool, "EGRESS-011"),
    "macvlan_namespace": (_macvlan_namespace, "EGRESS-013"),
    "bridged_uplink": (_bridged_uplink, "EGRESS-014"),
    "packet_socket": (_packet_socket, "EGRESS-015"),
    "forwarding_open": (_forwarding_open, "EGRESS-012"),
}
"""Leak name -> (mutation, a rule id it must trip)."""


def leaky_facts(*leaks: str, host: str = "host2") -> dict[str, Any]:
    """The compliant host with the named leaks applied (validated again)."""
    document = copy.deepcopy(compliant_facts(host))
    for leak in leaks:
        LEAKS[leak][0](document)
    return HostFacts.model_validate(document).model_dump(mode="json")


def firewall_facts(n_rules: int, host: str = "fw1000") -> dict[str, Any]:
    """The compliant host with an output chain of ``n_rules`` accept rules, each to one enclave /24."""
    document = copy.deepcopy(compliant_facts(host))
    rules = [
        nft_rule("output", "accept", handle=10 + i, daddr=(f"10.{(i >> 8) & 255}.{i & 255}.0/24",), dports=[443])
        for i in range(n_rules)
    ]
    nft = document["firewall"]["nftables"]
    nft["rules"] = nft["rules"] + rules
    nft["chains"] = [output_chain(len(nft["rules"]))]
    return HostFacts.model_validate(document).model_dump(mode="json")


def facts_bytes(document: dict[str, Any]) -> bytes:
    """The bytes ``gapseal audit collect`` would write for ``document``."""
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
