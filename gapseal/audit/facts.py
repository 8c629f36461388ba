"""The facts schema: what the auditor knows about one host, and how it came to know it.

One ``HostFacts`` document per host, version ``FACTS_SCHEMA_VERSION``. Policies (Rego, ``input`` = this document as
JSON) read it; the evidence directory stores it with the raw outputs it was derived from.

Conventions every policy may rely on:

- Each domain (``routes``, ``firewall``, ``dns``, ...) carries ``status`` (``ok`` | ``unknown``) and ``reason``.
  A domain that could not be collected is ``unknown`` with the reason, never an empty "all clear": policies must treat
  ``status == "unknown"`` as failing.
- Each domain lists its ``sources``: the command argv or file path it read, the exit code, and the sha256 of the raw
  bytes. When ``stored`` is true the raw bytes are in ``HostFacts.raw_outputs`` under ``"sha256:<hex>"``.
  Sources that may hold secrets (process environments and command lines, environment files, profile scripts,
  systemd unit and system.conf files) are hashed but not stored.
- IP addresses come with an ``address_class`` (``loopback`` | ``unspecified`` | ``link_local`` | ``private`` |
  ``documentation`` | ``multicast`` | ``global``) and networks with ``first``/``last`` as fixed-width lower-case hex
  strings (8 digits for IPv4, 32 for IPv6), so containment in an allowlist is a string comparison and needs no
  ``net.cidr_*`` builtin (regopy lacks them).
- Values that may carry credentials (proxy URLs) have their userinfo replaced by ``***``.

Changes to this schema are additive within a version; a removal or a change of meaning bumps the version.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gapseal.errors import AuditError

FACTS_KIND: Final = "gapseal.audit.facts"
FACTS_SCHEMA_VERSION: Final = 1

Status = Literal["ok", "unknown"]
"""``ok``: the collector ran and the fact is what it says. ``unknown``: it could not run; see ``reason``."""

AddressClass = Literal["loopback", "unspecified", "link_local", "private", "documentation", "multicast", "global"]
Family = Literal["inet", "inet6"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


# --------------------------------------------------------------------------------------------------- provenance


class Source(_Model):
    """How a fact was obtained: one command run or one file read."""

    kind: Literal["command", "file", "directory", "procfs", "socket"]
    """``command``: ``argv`` was run; ``file``/``procfs``: ``path`` was read; ``directory``: ``path`` was listed;
    ``socket``: a probe made a socket call (no bytes read)."""
    argv: list[str] | None = None
    """The command line, for ``command`` sources (run without a shell)."""
    path: str | None = None
    """The path read, as seen by the collector (the ``root`` prefix included)."""
    exit_code: int | None = None
    """The command's exit status, for ``command`` sources that ran."""
    sha256: str | None = None
    """Lower-case hex sha256 of the raw bytes read (stdout for commands); null when nothing was read."""
    size: int | None = None
    """Length of the raw bytes in bytes."""
    stored: bool = False
    """True when the raw bytes are in ``HostFacts.raw_outputs["sha256:<hex>"]``."""
    error: str | None = None
    """Why the command or read failed (missing file, exit status and stderr, permission), when it did."""


class RawOutput(_Model):
    """The raw bytes behind one or more sources, kept so the evidence directory can store and re-hash them."""

    encoding: Literal["utf-8", "base64"]
    """How ``content`` encodes the bytes: ``utf-8`` text when the bytes decode as UTF-8, else base64."""
    content: str
    """The raw bytes in ``encoding``."""
    size: int
    """Length of the raw bytes."""


class _Domain(_Model):
    status: Status = "ok"
    """``ok`` or ``unknown``; policies treat ``unknown`` as failing."""
    reason: str | None = None
    """Why the domain is ``unknown`` (or a note on a partial collection)."""
    sources: list[Source] = Field(default_factory=list)
    """Every command run and file read for this domain."""


class Network(_Model):
    """An IP network (or a single address as /32, /128), with its bounds in comparable form."""

    cidr: str
    """Normalised ``address/prefixlen`` (``0.0.0.0/0`` and ``::/0`` for defaults)."""
    family: Family
    """``inet`` or ``inet6``."""
    prefixlen: int
    """Prefix length (0 for a default route)."""
    first: str
    """First address as fixed-width lower-case hex (8 digits IPv4, 32 IPv6): compare as strings."""
    last: str
    """Last address, same form as ``first``."""
    address_class: AddressClass
    """Class of the network's first address (a default route's ``0.0.0.0/0`` is ``unspecified``)."""


# --------------------------------------------------------------------------------------------------- host


class HostInfo(_Model):
    """Which host (and which network namespace) these facts describe."""

    hostname: str
    """The kernel hostname (``uname -n``) of the collecting process's UTS namespace."""
    root: str
    """The file-system prefix collectors read configuration under (``/`` on a real host)."""
    netns: str | None
    """The collector's network namespace, as ``readlink /proc/self/ns/net`` (``net:[4026531840]``)."""
    kernel: str
    """``uname -r``."""
    machine_id: str | None = None
    """``{root}/etc/machine-id`` when present."""
    os: str | None = None
    """``PRETTY_NAME`` of ``{root}/etc/os-release`` (or ``usr/lib/os-release``); null when neither is readable."""


class CollectorInfo(_Model):
    """The tool that collected the facts."""

    tool: Literal["gapseal"] = "gapseal"
    """Always ``gapseal``."""
    version: str
    """gapseal's version."""


# --------------------------------------------------------------------------------------------------- routes


class Route(_Model):
    """One route from ``ip -j route show table all`` (IPv4) or ``ip -6 -j route show table all``."""

    family: Family
    """``inet`` or ``inet6``."""
    table: str
    """Routing table name or number (``main``, ``local``, ``254``...)."""
    type: str
    """Route type: ``unicast``, ``local``, ``broadcast``, ``multicast``, ``unreachable``, ``blackhole``..."""
    dst: Network
    """Destination network (``default`` is ``0.0.0.0/0`` or ``::/0``)."""
    is_default: bool
    """True for a default route (prefix length 0)."""
    gateway: str | None = None
    """Next-hop address, when the route has one."""
    dev: str | None = None
    """Output interface."""
    protocol: str | None = None
    """Routing protocol that installed the route (``kernel``, ``static``, ``dhcp``...)."""
    scope: str | None = None
    """Route scope (``link``, ``host``, ``global``)."""
    prefsrc: str | None = None
    """Preferred source address."""
    metric: int | None = None
    """Route metric."""
    forwards: bool
    """True when the route sends packets out of the host: a ``unicast`` route via an interface other than ``lo``."""


class RoutingRule(_Model):
    """One policy-routing rule from ``ip -j rule`` / ``ip -6 -j rule``."""

    family: Family
    """``inet`` or ``inet6``."""
    priority: int
    """Rule priority (lower first)."""
    table: str | None = None
    """Table looked up (for ``lookup`` rules)."""
    action: str
    """``lookup`` (to ``table``), ``unreachable``, ``blackhole``, ``prohibit``, ``goto``, ``nop``."""
    selector: dict[str, str] = Field(default_factory=dict)
    """Match fields as ``ip -j rule`` prints them (``src``, ``dst``, ``iif``, ``oif``, ``fwmark``...)."""


class ForwardingSetting(_Model):
    """One forwarding sysctl as read from ``/proc/sys/net``."""

    family: Family
    """``inet`` (``net.ipv4.conf.<interface>.forwarding``) or ``inet6`` (``net.ipv6.conf.<interface>.forwarding``)."""
    interface: str
    """The interface, or ``all`` / ``default``."""
    path: str
    """The file read, e.g. ``/proc/sys/net/ipv4/conf/eth0/forwarding``."""
    value: int | None
    """The value (0 off, 1 on; IPv6 2 is on too); null when the file could not be read or parsed."""


class IpForwarding(_Model):
    """Whether the host forwards packets it receives (a router for containers, VMs or other hosts).

    The kernel forwards an IPv4 packet when the *input* interface's ``net.ipv4.conf.<if>.forwarding`` is on
    (``net.ipv4.ip_forward`` sets every interface's); an IPv6 packet when ``net.ipv6.conf.all.forwarding`` is on.
    """

    status: Status
    """``unknown`` when some setting that decides could not be read (then ``inet``/``inet6`` may be null)."""
    reason: str | None = None
    """Why the status is ``unknown``."""
    inet: bool | None
    """IPv4 packets arriving on some non-loopback interface are forwarded; null: could not be determined."""
    inet6: bool | None
    """IPv6 packets arriving on any interface are forwarded; null: could not be determined."""
    interfaces: dict[str, list[str]] = Field(default_factory=dict)
    """Per family (``inet``, ``inet6``), the non-loopback interfaces whose arriving packets are forwarded."""
    settings: list[ForwardingSetting] = Field(default_factory=list)
    """Every setting read."""


class RoutesFacts(_Domain):
    """Routing tables and rules, IPv4 and IPv6, and whether the host forwards packets."""

    routes: list[Route] = Field(default_factory=list)
    """Every route of every table, both families."""
    rules: list[RoutingRule] = Field(default_factory=list)
    """Every policy-routing rule, both families."""
    default_routes: list[Route] = Field(default_factory=list)
    """The routes with ``is_default`` and ``forwards`` (in any table): a way off the host towards anywhere."""
    forwarding_routes: list[Route] = Field(default_factory=list)
    """Every route with ``forwards`` true, default routes included."""
    ip_forwarding: IpForwarding | None = None
    """The forwarding sysctls; null in facts from before they were collected (policies treat that as unknown)."""


# --------------------------------------------------------------------------------------------------- firewall


class NftChain(_Model):
    """One nftables chain."""

    family: str
    """``ip``, ``ip6``, ``inet``, ``arp``, ``bridge``, ``netdev``."""
    table: str
    """Table name."""
    name: str
    """Chain name."""
    type: str | None = None
    """Base chain type (``filter``, ``nat``, ``route``); null for regular chains."""
    hook: str | None = None
    """Base chain hook (``input``, ``output``, ``forward``...); null for regular chains."""
    priority: int | None = None
    """Base chain priority."""
    policy: str | None = None
    """Base chain policy (``accept`` | ``drop``); null for regular chains."""
    rule_count: int
    """Number of rules in the chain."""


class NftRule(_Model):
    """One nftables rule, with the matches policies care about extracted from its expression list."""

    family: str
    """Table family."""
    table: str
    """Table name."""
    chain: str
    """Chain name."""
    handle: int | None = None
    """Rule handle."""
    verdict: str | None = None
    """Final verdict: ``accept``, ``drop``, ``reject``, ``jump``, ``goto``, ``return``, ``continue``; null if none."""
    target: str | None = None
    """Chain named by a ``jump``/``goto`` verdict."""
    daddr: list[Network] = Field(default_factory=list)
    """Destination networks matched with ``==`` (``ip daddr``, ``ip6 daddr``, literal sets and prefixes)."""
    saddr: list[Network] = Field(default_factory=list)
    """Source networks matched with ``==``."""
    dports: list[int] = Field(default_factory=list)
    """Destination ports matched (single ports and ranges expanded up to 64 entries)."""
    oifname: list[str] = Field(default_factory=list)
    """Output interface names matched."""
    iifname: list[str] = Field(default_factory=list)
    """Input interface names matched."""
    ct_state: list[str] = Field(default_factory=list)
    """Conntrack states matched (``established``, ``related``...)."""
    icmpv6_types: list[str] = Field(default_factory=list)
    """ICMPv6 types matched (``icmpv6 type { nd-neighbor-solicit, ... }``), by nft's names."""
    negated: bool = False
    """True when any match uses ``!=``: the extracted lists then over-approximate and policies should be wary."""
    unparsed: bool = False
    """True when the rule holds matches the extractor does not understand (sets by name, maps, meta...)."""
    comment: str | None = None
    """The rule's comment."""


class NftablesFacts(_Model):
    """The nftables ruleset from ``nft -j list ruleset``."""

    status: Status
    """``unknown`` when nft is missing or failed."""
    reason: str | None = None
    """Why the status is ``unknown``."""
    present: bool
    """True when the ``nft`` tool exists on the host."""
    chains: list[NftChain] = Field(default_factory=list)
    """Every chain of every table."""
    rules: list[NftRule] = Field(default_factory=list)
    """Every rule, in ruleset order."""
    output_policy: dict[str, str] = Field(default_factory=dict)
    """For each family (``ip``, ``ip6``, ``inet``): the strictest policy among its ``filter`` chains on hook
    ``output`` (``drop`` if any is ``drop``); a family without such a chain is absent."""
    ruleset: list[dict[str, Any]] = Field(default_factory=list)
    """The ``nftables`` array exactly as ``nft -j`` printed it, for policies that need more."""


class IptablesChain(_Model):
    """One chain of an ``iptables-save`` / ``ip6tables-save`` table."""

    family: Family
    """``inet`` (iptables-save) or ``inet6`` (ip6tables-save)."""
    table: str
    """``filter``, ``nat``, ``mangle``, ``raw``, ``security``."""
    name: str
    """Chain name (``OUTPUT``, ``INPUT``, user chains)."""
    policy: str | None = None
    """Built-in chain policy (``ACCEPT`` | ``DROP``); null (``-``) for user chains."""
    rules: list[str] = Field(default_factory=list)
    """The chain's ``-A`` lines, verbatim, in order."""


class IptablesFacts(_Model):
    """Legacy/compat iptables state from ``iptables-save`` and ``ip6tables-save``, where present."""

    status: Status
    """``unknown`` when a present tool failed."""
    reason: str | None = None
    """Why the status is ``unknown``, or why iptables is absent."""
    present: bool
    """True when ``iptables-save`` exists on the host."""
    chains: list[IptablesChain] = Field(default_factory=list)
    """Every chain of every table."""


class EgressAnswer(_Model):
    """The firewall's answer, as netfilter evaluates it, for NEW packets from this host to a class of destinations."""

    family: Family
    """``inet`` or ``inet6``."""
    protocol: Literal["tcp", "udp", "icmp"]
    """Layer 4 protocol (``icmp`` is an echo request, ICMPv6 for ``inet6``)."""
    destinations: list[Network]
    """The destination addresses, as networks (one address range the rules cannot tell apart)."""
    ports: list[str]
    """Destination ports (``443``, ``1000-2000``) with this answer; empty for icmp."""
    verdict: Literal["accept", "drop", "unknown"]
    """``accept``: every base chain lets such a packet out; ``drop``: one drops it; ``unknown``: it depends on a rule
    gapseal does not model (quoted in ``decided_by``)."""
    decided_by: list[str]
    """The rules (quoted as the ruleset prints them, double quotes as single) or chain policies that decided, or
    the rules not understood."""


class FirewallEgress(_Model):
    """The evaluator's answers (``gapseal.audit.netfilter``): which destinations NEW packets reach.

    ``firewall.egress``: packets from this host; ``firewall.forward``: packets through it.
    """

    status: Status
    """``unknown`` when the ruleset could not be read or evaluated."""
    reason: str | None = None
    """Why the status is ``unknown``."""
    base_chains: list[str] = Field(default_factory=list)
    """Every base chain evaluated (hook, priority, policy; dormant tables say so)."""
    notes: list[str] = Field(default_factory=list)
    """What was left out and why (tables of other families, sources that could not be read)."""
    probes: list[EgressAnswer] = Field(default_factory=list)
    """The answers for the documentation addresses that stand for "anywhere outside", drops included."""
    classes: list[EgressAnswer] = Field(default_factory=list)
    """Every destination class whose answer is not ``drop`` (accepted, or unknown), both families, tcp/udp/icmp."""


class FirewallFacts(_Domain):
    """Packet filtering: nftables, and iptables where present."""

    nftables: NftablesFacts
    """The nftables ruleset."""
    iptables: IptablesFacts
    """iptables/ip6tables rules, where the tools exist."""
    egress: FirewallEgress | None = None
    """nftables, iptables-nft and iptables-legacy evaluated together; null in facts from before the evaluator
    (policies treat that as unknown)."""
    forward: FirewallEgress | None = None
    """The same evaluation for NEW packets the host would *forward* (arriving on any non-loopback interface:
    prerouting, forward and postrouting hooks); null in facts from before it (policies treat that as unknown)."""


# --------------------------------------------------------------------------------------------------- DNS


class Nameserver(_Model):
    """A DNS server the host's resolver is configured to use."""

    address: str
    """The server's IP address."""
    address_class: AddressClass
    """Class of the address (a ``global`` resolver is outside any enclave)."""
    origin: str
    """Where it is configured: ``resolv.conf``, ``resolved.conf:DNS``, ``resolved.conf:FallbackDNS``."""


class ResolvedFacts(_Model):
    """systemd-resolved configuration (``/etc/systemd/resolved.conf`` and its drop-ins)."""

    present: bool
    """True when any resolved.conf file exists."""
    settings: dict[str, str] = Field(default_factory=dict)
    """Effective ``[Resolve]`` settings (later drop-ins win), e.g. ``DNS``, ``FallbackDNS``, ``DNSOverTLS``, ``LLMNR``,
    ``MulticastDNS``."""


class DnsFacts(_Domain):
    """Name resolution: resolv.conf, nsswitch, systemd-resolved."""

    resolv_conf_present: bool = False
    """True when ``{root}/etc/resolv.conf`` could be read."""
    resolv_conf_target: str | None = None
    """The symlink target of ``/etc/resolv.conf`` when it is a link (e.g. systemd-resolved's stub)."""
    nameservers: list[Nameserver] = Field(default_factory=list)
    """Every nameserver from ``resolv.conf`` and ``resolved.conf`` (``DNS=``, ``FallbackDNS=``)."""
    search: list[str] = Field(default_factory=list)
    """Search domains of resolv.conf (the last ``search``/``domain`` line)."""
    options: list[str] = Field(default_factory=list)
    """``options`` of resolv.conf."""
    nsswitch_hosts: list[str] = Field(default_factory=list)
    """The ``hosts:`` line of ``/etc/nsswitch.conf``, split (``files``, ``dns``, ``mdns4_minimal``...)."""
    resolved: ResolvedFacts
    """systemd-resolved configuration."""


# --------------------------------------------------------------------------------------------------- processes


class ProcessRef(_Model):
    """A process, identified enough for a report."""

    pid: int
    """Process id."""
    comm: str
    """``/proc/<pid>/comm``."""
    exe: str | None = None
    """``readlink /proc/<pid>/exe`` when readable."""


class ProcessInfo(_Model):
    """A process running in the collector's network namespace that matters to the audit."""

    pid: int
    """Process id."""
    comm: str
    """``/proc/<pid>/comm``."""
    exe: str | None = None
    """``readlink /proc/<pid>/exe`` when readable."""
    cmdline: list[str] = Field(default_factory=list)
    """``/proc/<pid>/cmdline`` split into arguments, values of secret-looking options (``--api-key``) as ``***``."""
    services: list[str] = Field(default_factory=list)
    """Inference services recognised from the command line (``vllm``, ``tgi``, ``ollama``, ``llama.cpp``,
    ``open-webui``, ``gradio``, ``huggingface``), or ``gapseal-service`` for a program of an installed build."""
    environment: dict[str, str] = Field(default_factory=dict)
    """Only the proxy and telemetry variables from ``/proc/<pid>/environ`` (never the whole environment); proxy URL
    credentials replaced by ``***``."""
    environ_readable: bool
    """False when ``/proc/<pid>/environ`` could not be read (then ``environment`` is unknown, not empty)."""
    recognised_by: dict[str, str] = Field(default_factory=dict)
    """Service -> what identified it: ``command``, ``environment``, ``loaded-library``, ``marker``, ``install-dir``."""


class ProcessesFacts(_Domain):
    """Processes in this host's network namespace (``/proc/<pid>/ns/net`` equal to the collector's own)."""

    netns: str | None = None
    """The namespace processes were matched against."""
    scanned: int = 0
    """Processes in this namespace."""
    inference: list[ProcessInfo] = Field(default_factory=list)
    """Processes recognised as inference services, with their relevant environment."""


# --------------------------------------------------------------------------------------------------- proxies


class ProxySetting(_Model):
    """One proxy variable set somewhere on the host."""

    variable: str
    """The variable as written (``http_proxy``, ``HTTPS_PROXY``, ``no_proxy``...)."""
    name: str
    """Lower-cased variable name (``http_proxy``, ``https_proxy``, ``ftp_proxy``, ``all_proxy``, ``no_proxy``)."""
    value: str
    """The value with any URL userinfo replaced by ``***``."""
    is_exclusion: bool
    """True for ``no_proxy`` (a list of exclusions, not a proxy)."""
    origin: Literal[
        "etc_environment",
        "environment_d",
        "profile",
        "profile_d",
        "shell_rc",
        "systemd_unit",
        "systemd_system_conf",
        "process",
    ]
    """Kind of place the variable was set in: ``/etc/environment``, ``/etc/environment.d``, ``/etc/profile``,
    ``/etc/profile.d``, ``/etc/bash.bashrc`` (``shell_rc``), a unit or its drop-ins (top-level ``service.d/``
    included), systemd's ``DefaultEnvironment``, or a running process's environment."""
    location: str
    """File path (with ``:line``) or ``pid:<n>`` the setting was found in."""


class ProxyFacts(_Domain):
    """Proxy variables from the system environment, login profiles, systemd units and running inference processes."""

    settings: list[ProxySetting] = Field(default_factory=list)
    """Every proxy variable found, exclusions (``no_proxy``) included."""
    proxies: list[ProxySetting] = Field(default_factory=list)
    """The settings that route traffic through a proxy: non-empty and not ``no_proxy``."""
    processes_scanned: int = 0
    """Running processes of this host whose environment was read (every process, not only inference services)."""
    processes_unreadable: int = 0
    """Processes whose ``/proc/<pid>/environ`` could not be read (then the domain is ``unknown``)."""


# --------------------------------------------------------------------------------------------------- sockets


class ListeningSocket(_Model):
    """A socket waiting for traffic: TCP in LISTEN, UDP unconnected and bound."""

    protocol: Literal["tcp", "udp"]
    """``tcp`` or ``udp``."""
    family: Family
    """``inet`` or ``inet6``."""
    address: str
    """Bound address (``0.0.0.0``, ``::``, ``127.0.0.1``...)."""
    port: int
    """Bound port."""
    bind_scope: Literal["all", "loopback", "specific"]
    """``all``: bound to ``0.0.0.0``/``::`` (every interface); ``loopback``: 127.0.0.0/8 or ``::1``; ``specific``: one
    non-loopback address."""
    address_class: AddressClass
    """Class of the bound address."""
    inode: int
    """Socket inode (links the socket to ``/proc/<pid>/fd``)."""
    processes: list[ProcessRef] = Field(default_factory=list)
    """Processes holding the socket (empty when none is visible, e.g. kernel sockets)."""


class SocketsFacts(_Domain):
    """Listening sockets of this network namespace, from ``/proc/net/{tcp,tcp6,udp,udp6}`` and ``/proc/*/fd``."""

    listening: list[ListeningSocket] = Field(default_factory=list)
    """Every listening socket of this network namespace."""
    exposed: list[ListeningSocket] = Field(default_factory=list)
    """Listening sockets not bound to loopback (``bind_scope`` ``all`` or ``specific``)."""


# --------------------------------------------------------------------------------------------------- probes


class ProbeResult(_Model):
    """One egress probe."""

    kind: Literal["route", "udp_connect", "tcp_connect", "dns"]
    """``route``: ``ip route get`` (no packet); ``udp_connect``: ``connect()`` on a UDP socket (no packet);
    ``tcp_connect``: a real TCP handshake (only to targets the user named); ``dns``: one A query to a named server."""
    target: str
    """Address (and ``:port``) probed."""
    family: Family
    """``inet`` or ``inet6``."""
    active: bool
    """True when the probe sent packets (``tcp_connect``, ``dns``)."""
    outcome: Literal["no_route", "routed", "connected", "refused", "timeout", "answered", "error"]
    """``no_route``: the kernel has no route (ENETUNREACH/EHOSTUNREACH, or ``unreachable``/``prohibit``/``blackhole``
    route); ``routed``: a route exists / UDP connect succeeded; ``connected``: TCP handshake completed; ``refused``: RST
    came back (the network path exists); ``timeout``: nothing came back in time; ``answered``: a DNS reply arrived."""
    egress_possible: bool
    """True when the outcome shows a path off the host exists (``routed``, ``connected``, ``refused``, ``answered``)."""
    detail: str | None = None
    """The error text or the route line (``dev``, ``via``, ``src``)."""
    errno: str | None = None
    """Symbolic errno (``ENETUNREACH``...) when a socket call failed."""
    gateway: str | None = None
    """The next hop the kernel chose for the target (``ip route get``), when it routes via a gateway: policies compare
    it with the site's allowed default-route gateways."""


class ProbesFacts(_Domain):
    """Egress probes. By default only route lookups and UDP connect(), which send no packet."""

    probes: list[ProbeResult] = Field(default_factory=list)
    """Every probe run, passive first."""
    egress_possible: bool = False
    """True when any probe has ``egress_possible``."""
    active_targets: list[str] = Field(default_factory=list)
    """Targets the user named for active probes (``--probe HOST:PORT``)."""


# --------------------------------------------------------------------------------------------------- telemetry


class TelemetrySwitch(_Model):
    """One documented telemetry/offline switch and its value where a service runs."""

    variable: str
    """Environment variable (exact name from the project's documentation)."""
    expected: str
    """What disables telemetry / enables offline mode (e.g. ``1``, ``False``, ``off``)."""
    value: str | None = None
    """The value found, null when unset."""
    satisfied: bool
    """True when ``value`` matches ``expected`` (case-insensitive, ``1``/``true``/``yes``/``on`` alike for booleans)."""


class TelemetryRequirement(_Model):
    """A group of switches of which one must be satisfied (e.g. ``VLLM_NO_USAGE_STATS`` or ``DO_NOT_TRACK``)."""

    service: str
    """The service the requirement belongs to."""
    purpose: str
    """What the group controls (``usage statistics``, ``hub offline``...)."""
    any_of: list[TelemetrySwitch]
    """The switches, any one of which satisfies the requirement."""
    satisfied: bool
    """True when at least one switch is satisfied."""


class InferenceService(_Model):
    """An inference service found running or configured, with its telemetry switches."""

    service: str
    """``vllm``, ``tgi``, ``ollama``, ``llama.cpp``, ``open-webui``, ``gradio``, ``huggingface``,
    ``gapseal-service`` (a program of an installed build, of no known kind)."""
    origin: Literal["process", "systemd_unit", "quadlet"]
    """``process``: a running process; ``systemd_unit``: a unit file (what would run at boot, a ``podman run`` in
    ``ExecStart=`` included); ``quadlet``: a podman Quadlet ``.container`` file."""
    location: str
    """``pid:<n>`` or the unit file path."""
    image: str | None = None
    """The container image the service runs from, when it runs in a container (its environment is then the
    container's: ``-e``/``--env-file``/``Environment=`` of the container, not the unit's)."""
    recognised_by: str | None = None
    """What identified the service: ``command``, ``image``, ``environment``, ``python-imports``, ``loaded-library``,
    ``marker`` (``GAPSEAL_SERVICE``) or ``install-dir``."""
    environment_known: bool
    """False when the environment could not be read: then every requirement is unsatisfied."""
    exposure: float | None = None
    """``systemd-analyze security`` overall exposure of the unit (0 = most locked down, 10 = none), when the unit is
    loaded on a live systemd host; None for processes, Quadlet files, staged roots, or when it could not be read."""
    exposure_rating: str | None = None
    """systemd's word for that exposure: ``OK``, ``MEDIUM``, ``EXPOSED`` or ``UNSAFE``."""
    requirements: list[TelemetryRequirement] = Field(default_factory=list)
    """Every telemetry/offline requirement of the service, checked."""
    telemetry_disabled: bool
    """True when every requirement is satisfied."""


class TelemetryFacts(_Domain):
    """Telemetry switches of inference services (process environments and systemd unit files)."""

    services: list[InferenceService] = Field(default_factory=list)
    """Every inference service found, with its switches."""
    violations: list[str] = Field(default_factory=list)
    """``<service>@<location>: <purpose>`` for every unsatisfied requirement."""


# --------------------------------------------------------------------------------------------------- storage


StorageKind = Literal["local_block", "network", "fuse", "overlay", "virtual", "unknown"]


class Mount(_Model):
    """One line of ``/proc/self/mountinfo``."""

    mount_id: int
    """Unique mount id."""
    parent_id: int
    """Id of the parent mount."""
    major_minor: str
    """``major:minor`` of the device behind the mount (``0:xx`` for non-block file systems)."""
    root: str
    """Root of the mount within its file system (bind mounts show a sub-path)."""
    mount_point: str
    """Mount point (octal escapes decoded)."""
    options: list[str] = Field(default_factory=list)
    """Per-mount options (``rw``, ``nosuid``...)."""
    fstype: str
    """File-system type, with subtype (``fuse.sshfs``, ``nfs4``, ``cifs``, ``ext4``...)."""
    source: str
    """Mount source (``/dev/mapper/...``, ``server:/export``, ``//server/share``)."""
    super_options: list[str] = Field(default_factory=list)
    """Per-superblock options (``addr=``, ``vers=`` for NFS...)."""
    kind: StorageKind
    """``local_block``: a local block device; ``network``: NFS, CIFS/SMB, Ceph, GlusterFS, 9p, iSCSI-free remote fs;
    ``fuse``: any FUSE fs (sshfs, s3fs, rclone... treated as possibly remote); ``overlay``; ``virtual``: proc, sysfs,
    tmpfs..."""
    remote: bool
    """True for ``network`` and for FUSE file systems (data may leave the host)."""


class BlockDevice(_Model):
    """One node of the ``lsblk -J`` tree, flattened, with its chain of underlying devices."""

    name: str
    """Device name as lsblk prints it (a full path with ``lsblk -p``)."""
    kname: str | None = None
    """Internal kernel device name (``dm-0``, ``nvme0n1p3``)."""
    major_minor: str | None = None
    """``major:minor`` device number (matches ``Mount.major_minor``)."""
    type: str
    """``disk``, ``part``, ``crypt``, ``lvm``, ``raid1``, ``loop``, ``rom``..."""
    fstype: str | None = None
    """``ext4``, ``crypto_LUKS``, ``LVM2_member``..."""
    mountpoints: list[str] = Field(default_factory=list)
    """Where the device is mounted (empty when unmounted)."""
    chain: list[str] = Field(default_factory=list)
    """Names from this device down to the physical disk (``root`` → ``luks-…`` → ``nvme0n1p3`` → ``nvme0n1``)."""
    encrypted: bool
    """True when this device or one under it is ``crypt`` or ``crypto_LUKS``."""


Encryption = Literal["encrypted", "not_encrypted", "unknown", "not_applicable"]


class PathStorage(_Model):
    """The storage behind one model, data or install path."""

    path: str
    """The path as given (model/install directory from the record, or ``--data-path``)."""
    role: Literal["model", "data", "install"]
    """``model``: model weights; ``install``: an installed build; ``data``: a data directory."""
    exists: bool
    """True when the path exists now."""
    mount_point: str | None = None
    """Mount point of the mount holding the path."""
    fstype: str | None = None
    """File-system type of that mount."""
    source: str | None = None
    """Source of that mount."""
    kind: StorageKind = "unknown"
    """Classification of that mount (see ``Mount.kind``)."""
    remote: bool | None = None
    """True for network or FUSE storage; null when the mount could not be determined."""
    encryption: Encryption = "unknown"
    """``encrypted``: a dm-crypt/LUKS layer is in the device chain; ``not_encrypted``: the chain is known and has none;
    ``not_applicable``: virtual file systems (tmpfs, proc); ``unknown``: network/FUSE or no block device info."""
    device_chain: list[str] = Field(default_factory=list)
    """Block device names from the mounted device down to the disk."""
    reason: str | None = None
    """Why ``kind`` or ``encryption`` is ``unknown``."""
    below: str | None = None
    """For a mount found at or below a model/data/install path: that path (``path`` is then the mount point)."""


class StorageFacts(_Domain):
    """Mounts behind model/data/install paths, and disk encryption of those volumes."""

    mounts: list[Mount] = Field(default_factory=list)
    """Every mount of the collector's mount namespace."""
    block_devices: list[BlockDevice] = Field(default_factory=list)
    """Every block device lsblk reports."""
    block_devices_status: Status = "ok"
    """``unknown`` when ``lsblk`` could not run (then every ``encryption`` is ``unknown``)."""
    paths: list[PathStorage] = Field(default_factory=list)
    """Storage behind each model, install and data path."""


# --------------------------------------------------------------------------------------------------- integrity


class FileIntegrity(_Model):
    """One installed file checked against the install record."""

    path: str
    """Path as recorded in ``installed.json``."""
    expected_sha256: str
    """Digest recorded at install time (hex, no prefix)."""
    expected_size: int
    """Size recorded at install time."""
    actual_sha256: str | None = None
    """Digest of the file now; null when it could not be hashed."""
    actual_size: int | None = None
    """Size of the file now; null when it could not be read."""
    state: Literal["ok", "modified", "missing", "not_regular", "unreadable"]
    """``modified``: size or digest differ; ``not_regular``: a symlink, directory or device where a file was
    installed."""


class IntegrityFacts(_Domain):
    """Installed files against ``{root}/var/lib/gapseal/installed.json``."""

    record_path: str
    """Where the install record was looked for."""
    record_present: bool = False
    """True when the record could be read."""
    record_sha256: str | None = None
    """sha256 (hex) of the record's bytes."""
    bundle_name: str | None = None
    """Name of the installed bundle (from the record)."""
    bundle_version: str | None = None
    """Version of the installed bundle."""
    manifest_digest: str | None = None
    """The signed bundle manifest digest the install came from (``sha256:<hex>``)."""
    variants: list[str] = Field(default_factory=list)
    """Installed build variants, ``<build>:<backend>/<arch>``."""
    files: list[FileIntegrity] = Field(default_factory=list)
    """Every recorded file, checked."""
    checked: int = 0
    """Number of files checked."""
    ok: int = 0
    """Number of files whose state is ``ok``."""
    failures: list[str] = Field(default_factory=list)
    """``<state>: <path>`` for every file whose state is not ``ok``."""


# --------------------------------------------------------------------------------------------------- ssh


class SshFacts(_Domain):
    """sshd authentication settings: ``sshd -T`` when it runs, else ``sshd_config`` (and its Includes) parsed."""

    present: bool = False
    """True when sshd or its configuration exists on the host."""
    method: Literal["sshd -T", "sshd_config", "none"] = "none"
    """How the settings were obtained."""
    settings: dict[str, str] = Field(default_factory=dict)
    """Every effective setting, lower-case keyword → value (first occurrence wins, as sshd does; Match blocks not
    applied)."""
    password_authentication: str | None = None
    """``yes`` | ``no`` (sshd's default ``yes`` applied when unset in a parsed config)."""
    permit_root_login: str | None = None
    """``yes`` | ``no`` | ``prohibit-password`` | ``without-password`` | ``forced-commands-only``."""
    pubkey_authentication: str | None = None
    """``yes`` | ``no``."""
    kbd_interactive_authentication: str | None = None
    """``yes`` | ``no`` (ChallengeResponseAuthentication is its older name)."""
    permit_empty_passwords: str | None = None
    """``yes`` | ``no``."""
    listen_addresses: list[str] = Field(default_factory=list)
    """``ListenAddress`` values (empty: all addresses)."""
    ports: list[int] = Field(default_factory=list)
    """``Port`` values."""
    match_blocks: int = 0
    """Number of ``Match`` blocks (their settings are not reflected above)."""
    forwarding: list[SshForwarding] = Field(default_factory=list)
    """Forwarding and tunnelling as sshd applies it: the global context first, then one entry per ``Match`` block
    (that block applied over the global settings, as sshd does for a connection the block matches)."""


class SshForwarding(_Model):
    """What an ssh connection in one context may forward or tunnel (sshd_config(5))."""

    context: str
    """``global`` (a connection no Match block matches) or the Match block's criteria (``Match User alice``)."""
    method: Literal["sshd -T", "sshd -T -C", "sshd_config"]
    """``sshd -T`` (-C with a connection spec built from the Match criteria) or the configuration parsed."""
    settings: dict[str, str] = Field(default_factory=dict)
    """Effective values, lower-case keywords: ``allowtcpforwarding``, ``allowstreamlocalforwarding``,
    ``permittunnel``, ``gatewayports``, ``permitopen``, ``permitlisten``, ``disableforwarding`` (defaults applied)."""
    tcp_forwarding: bool
    """True when ``-L``/``-R``/``-D`` forwarding works: AllowTcpForwarding not ``no``, DisableForwarding not ``yes``,
    and not both PermitOpen and PermitListen ``none``."""
    streamlocal_forwarding: bool
    """True when Unix-socket forwarding works: AllowStreamLocalForwarding not ``no``, DisableForwarding not ``yes``."""
    tunnel: bool
    """True when tun/tap tunnels (``ssh -w``) are allowed: PermitTunnel not ``no``."""
    gateway_ports: bool
    """True when remote forwards may bind non-loopback addresses (GatewayPorts not ``no``) and TCP forwarding works."""


# --------------------------------------------------------------------------------------------------- logging


class JournaldFacts(_Model):
    """systemd-journald configuration (``journald.conf`` and drop-ins)."""

    present: bool
    """True when any journald.conf file exists."""
    settings: dict[str, str] = Field(default_factory=dict)
    """Effective ``[Journal]`` settings (later drop-ins win)."""
    storage: str
    """``Storage=`` (default ``auto``: persistent only if ``/var/log/journal`` exists)."""
    persistent: bool
    """True when journals survive a reboot: ``persistent``, or ``auto`` with ``{root}/var/log/journal`` present."""
    max_retention_sec: int | None = None
    """``MaxRetentionSec=`` in seconds; null when unset (no time-based deletion) or 0."""
    forward_to_syslog: str | None = None
    """``ForwardToSyslog=`` when set."""


class AuditdFacts(_Model):
    """Linux audit daemon configuration (``/etc/audit/auditd.conf``)."""

    present: bool
    """True when ``{root}/etc/audit/auditd.conf`` exists."""
    settings: dict[str, str] = Field(default_factory=dict)
    """All key = value settings, keys lower-case."""
    rules_files: list[str] = Field(default_factory=list)
    """``/etc/audit/rules.d/*.rules`` present."""


class LoggingFacts(_Domain):
    """Log retention: journald and auditd."""

    journald: JournaldFacts
    """systemd-journald settings."""
    auditd: AuditdFacts
    """auditd settings."""


# --------------------------------------------------------------------------------------------------- package sources


class PackageSource(_Model):
    """One place a package manager or container engine fetches from (or through)."""

    manager: Literal["apt", "pip", "npm", "conda", "podman", "docker"]
    """The tool whose configuration names it."""
    kind: Literal["source", "mirror", "registry", "proxy"]
    """``source``: a repository or index; ``mirror``: a registry mirror; ``registry``: a registry searched for
    unqualified names or named in a ``[[registry]]`` table; ``proxy``: a proxy the tool sends its requests through."""
    value: str
    """The URL or name as configured, URL credentials replaced by ``***``."""
    host: str | None = None
    """The host part (lower-case; no brackets for IPv6); null for local sources."""
    port: int | None = None
    """The port when one is written."""
    hostport: str | None = None
    """``host`` or ``host:port`` as written, for comparison with ``data.allowlist.registries``."""
    network: Network | None = None
    """The host as a /32 or /128 network when it is an IP address (for enclave containment)."""
    local: bool
    """True when fetching needs no network: ``file:``/``cdrom:``/``copy:`` URIs, a local path, a loopback host, or
    a registry that is ``blocked``."""
    location: str
    """The file (and line or key) it was found in."""


class PackageSourcesFacts(_Domain):
    """apt sources and proxies, pip/npm/conda indexes and proxies, podman registries.conf and docker daemon.json."""

    entries: list[PackageSource] = Field(default_factory=list)
    """Every configured source, mirror, registry and proxy."""


# --------------------------------------------------------------------------------------------------- time


class TimeServer(_Model):
    """A time server a time daemon is configured to ask."""

    daemon: Literal["chrony", "timesyncd", "ntpsec", "ntp", "networkd"]
    """The configuration it comes from (``networkd``: a ``.network`` file's ``NTP=``, used by timesyncd)."""
    directive: str
    """``server``, ``pool``, ``peer``, ``NTP``, ``FallbackNTP`` or ``compiled-in FallbackNTP``."""
    address: str
    """The server as written (a host name or an address)."""
    network: Network | None = None
    """The address as a /32 or /128 network when it is an IP address."""
    local: bool
    """True for loopback addresses and the local clock (``127.127.*``)."""
    location: str
    """File and line (or the reason for a compiled-in default)."""


class TimeFacts(_Domain):
    """chrony, systemd-timesyncd (and networkd ``NTP=``), ntpsec/ntp configuration."""

    daemons: list[str] = Field(default_factory=list)
    """Time daemons whose configuration or enabled unit was found."""
    servers: list[TimeServer] = Field(default_factory=list)
    """Every configured server, pool and peer."""


# --------------------------------------------------------------------------------------------------- datapath


class NetLink(_Model):
    """One network interface, from ``ip -j -d link show`` in the namespace that holds it."""

    name: str
    """Interface name."""
    ifindex: int
    """Interface index (unique within its namespace only)."""
    kind: str | None = None
    """``linkinfo.info_kind`` (``veth``, ``bridge``, ``macvlan``, ``ipvlan``, ``vlan``, ``tun``...); null for a
    physical device and for loopback."""
    link_type: str | None = None
    """``link_type`` (``ether``, ``loopback``, ``none``...)."""
    master: str | None = None
    """The bridge (or bond, VRF) this interface is enslaved to."""
    lower: str | None = None
    """The peer (veth) or lower device (macvlan, ipvlan, vlan) when it is in the same namespace."""
    peer_netns: str | None = None
    """The namespace (``net:[inode]``) holding the peer or lower device when it is in another namespace."""
    peer_unresolved: bool = False
    """True when the link names another namespace (``link_netnsid``) that could not be identified."""


class Bridge(_Model):
    """A bridge of the audited namespace and its ports."""

    name: str
    """Bridge name."""
    ports: list[str] = Field(default_factory=list)
    """Every enslaved interface."""
    uplink_ports: list[str] = Field(default_factory=list)
    """Ports that lead off the host: anything but a veth (or tap) whose peer is in a namespace of this host that
    has no way out of its own."""
    other_ports: list[str] = Field(default_factory=list)
    """The remaining ports (veths to containers, taps of VMs)."""


class BridgeNetfilter(_Model):
    """br_netfilter's switches in the audited namespace (``/proc/sys/net/bridge``)."""

    loaded: bool
    """True when ``/proc/sys/net/bridge`` exists (the br_netfilter module is loaded)."""
    call_iptables: int | None = None
    """``bridge-nf-call-iptables``: 1 sends bridged IPv4 frames through the IP hooks; null when unreadable."""
    call_ip6tables: int | None = None
    """``bridge-nf-call-ip6tables``: the same for IPv6."""


class NetnsPath(_Model):
    """A network namespace other than the audited one, and whether it has a way out of its own."""

    netns: str
    """``net:[inode]``."""
    names: list[str] = Field(default_factory=list)
    """Its names under ``/var/run/netns`` (``ip netns``)."""
    pids: list[int] = Field(default_factory=list)
    """Processes in it (the first 16 by pid)."""
    comms: list[str] = Field(default_factory=list)
    """Their ``comm`` names, same order."""
    status: Status = "ok"
    """``unknown`` when the namespace could not be entered or its links could not be listed."""
    reason: str | None = None
    """Why the status is ``unknown``."""
    attached: bool
    """True when it belongs to this host: every namespace does when the audited namespace is the host's initial
    one; otherwise those linked to the audited namespace by an interface (directly or through each other)."""
    interfaces: list[NetLink] = Field(default_factory=list)
    """Its interfaces."""
    ways_out: list[str] = Field(default_factory=list)
    """Its interfaces that leave the host without passing the audited namespace's IP hooks: anything but loopback,
    bridge, dummy, and veths whose peer is the audited namespace or another attached one without a way out."""


class PacketSocket(_Model):
    """An ``AF_PACKET`` socket of the audited namespace (``/proc/net/packet``): it sends frames below the IP hooks."""

    inode: int
    """Socket inode."""
    type: str
    """``raw``, ``dgram``, ``packet`` (SOCK_PACKET) or the number."""
    protocol: str
    """Ethertype bound, four hex digits (``0003`` all, ``0800`` IPv4, ``0806`` ARP, ``0000`` none yet)."""
    interface: str
    """Interface bound, by name (``any`` for index 0; ``#<index>`` when unknown)."""
    processes: list[ProcessRef] = Field(default_factory=list)
    """Processes holding the socket (empty when none could be found)."""


class DatapathFacts(_Domain):
    """Paths out that never reach the audited namespace's IP netfilter hooks.

    Other namespaces with their own way out, bridges carrying an uplink, packet sockets. ``status`` covers the
    audited namespace's interfaces.
    """

    netns: str | None = None
    """The audited namespace (``net:[inode]``)."""
    initial_netns: str | None = None
    """The host's initial namespace: that of PID 1, else of the lowest-numbered process whose namespace is readable."""
    interfaces: list[NetLink] = Field(default_factory=list)
    """The audited namespace's interfaces."""
    bridges: list[Bridge] = Field(default_factory=list)
    """Its bridges."""
    bridge_netfilter: BridgeNetfilter | None = None
    """br_netfilter's switches."""
    namespaces: list[NetnsPath] = Field(default_factory=list)
    """Every other namespace of this host (``attached``) found through processes' ``/proc/<pid>/ns/net`` and
    ``/var/run/netns``."""
    namespaces_status: Status = "ok"
    """``unknown`` when the set of namespaces of this host could not be determined (see ``namespaces_reason``)."""
    namespaces_reason: str | None = None
    """Why ``namespaces_status`` is ``unknown``."""
    packet_sockets: list[PacketSocket] = Field(default_factory=list)
    """Every packet socket of the audited namespace."""
    packet_sockets_status: Status = "ok"
    """``unknown`` when ``/proc/net/packet`` could not be read."""
    packet_sockets_reason: str | None = None
    """Why ``packet_sockets_status`` is ``unknown``."""


_NOT_COLLECTED = "not collected (facts written by an older gapseal)"


def _not_collected(domain: type[_Domain]) -> Any:
    return lambda: domain(status="unknown", reason=_NOT_COLLECTED)


def datapath_unknown(reason: str) -> DatapathFacts:
    """A ``DatapathFacts`` with every part ``unknown`` for ``reason``."""
    return DatapathFacts(
        status="unknown",
        reason=reason,
        namespaces_status="unknown",
        namespaces_reason=reason,
        packet_sockets_status="unknown",
        packet_sockets_reason=reason,
    )


# --------------------------------------------------------------------------------------------------- the document


class HostFacts(_Model):
    """Everything the auditor collected on one host."""

    kind: Literal["gapseal.audit.facts"] = FACTS_KIND
    """Always ``gapseal.audit.facts``."""
    schema_version: Literal[1] = FACTS_SCHEMA_VERSION
    """Version of this schema; readers refuse other versions."""
    collected_at: datetime
    """UTC time of collection (the only field that differs between two collections of an unchanged host)."""
    collector: CollectorInfo
    """The collecting tool and its version."""
    host: HostInfo
    """Which host the facts describe."""
    routes: RoutesFacts
    """Routing tables and rules."""
    firewall: FirewallFacts
    """Packet filtering."""
    dns: DnsFacts
    """Name resolution."""
    processes: ProcessesFacts
    """Inference processes of this host."""
    proxy: ProxyFacts
    """Proxy variables."""
    sockets: SocketsFacts
    """Listening sockets."""
    probes: ProbesFacts
    """Egress probes."""
    telemetry: TelemetryFacts
    """Telemetry switches of inference services."""
    storage: StorageFacts
    """Mounts and encryption behind model/data paths."""
    integrity: IntegrityFacts
    """Installed files against the install record."""
    ssh: SshFacts
    """sshd authentication settings."""
    logging: LoggingFacts
    """Log retention."""
    package_sources: PackageSourcesFacts = Field(default_factory=_not_collected(PackageSourcesFacts))
    """Package and container sources (``unknown`` in facts from a gapseal that did not collect them)."""
    time: TimeFacts = Field(default_factory=_not_collected(TimeFacts))
    """Time servers (``unknown`` in facts from a gapseal that did not collect them)."""
    datapath: DatapathFacts = Field(default_factory=lambda: datapath_unknown(_NOT_COLLECTED))
    """Paths out below the IP hooks (``unknown`` in facts from a gapseal that did not collect them)."""
    raw_outputs: dict[str, RawOutput] = Field(default_factory=dict)
    """Raw bytes of every stored source, keyed ``sha256:<hex>`` of those bytes."""

    def unknown_domains(self) -> list[str]:
        """Names of the domains whose status is ``unknown``."""
        names = ["routes", "firewall", "dns", "processes", "proxy", "sockets", "probes", "telemetry", "storage"]
        names += ["integrity", "ssh", "logging", "package_sources", "time", "datapath"]
        return [n for n in names if getattr(self, n).status == "unknown"]

    def to_json(self) -> str:
        """Serialise as sorted, indented JSON (the form stored in evidence and fed to policies)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_facts(data: bytes | str, *, where: str | None = None) -> HostFacts:
    """Parse a facts document, checking its kind and schema version first; raises ``AuditError``."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"facts are not valid JSON: {e}", where=where) from e
    if not isinstance(doc, dict):
        raise AuditError("facts must be a JSON object", where=where)
    if doc.get("kind") != FACTS_KIND:
        raise AuditError(
            f"not a gapseal facts document: kind is {doc.get('kind')!r}, expected {FACTS_KIND!r}", where=where
        )
    if doc.get("schema_version") != FACTS_SCHEMA_VERSION:
        raise AuditError(
            f"unsupported facts schema_version {doc.get('schema_version')!r} (this gapseal reads "
            f"{FACTS_SCHEMA_VERSION})",
            where=where,
            hint="collect the facts again with this version of gapseal",
        )
    try:
        return HostFacts.model_validate(doc)
    except ValidationError as e:
        raise AuditError(f"facts do not match schema v{FACTS_SCHEMA_VERSION}: {e}", where=where) from e
