"""Paths out of the host that never pass the audited namespace's IP netfilter hooks.

- Other network namespaces with a way out of their own: an interface attached to the outside without passing through
  the audited namespace's IP stack (a macvlan/ipvlan/vlan on its NIC, a physical NIC moved in, a veth to a namespace
  that is not this host's). Found through every process's ``/proc/<pid>/ns/net`` and ``/var/run/netns``; each is
  entered (``nsenter --net``) to list its links, and the kernel's peer ids (``_nsid``) say which namespace each
  ``link_netnsid`` names. A namespace that cannot be entered is ``unknown``, never "fine".
- Bridges of the audited namespace that enslave an uplink beside other ports: frames between ports are bridged,
  not routed, so the inet forward hook sees them only through br_netfilter (its switches are recorded).
- Packet sockets (``/proc/net/packet``): frames written there skip the IP hooks; mapped to processes through
  ``/proc/<pid>/fd`` socket inodes.

Which namespaces are this host's: when the collector runs in the host's initial namespace (that of PID 1, or of the
lowest-numbered readable process when PID 1's is unreadable), every namespace on the machine. Otherwise (the collector
runs in a namespace of its own, as on namespace hosts and inside containers) the namespaces linked to the audited one
by an interface, directly or through each other, never through the initial one (that is the audited namespace's
outside world, not part of it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapseal.audit.collectors._common import RawStore, Trace
from gapseal.audit.collectors._nsid import NsidError, peer_ids, peer_ids_in
from gapseal.audit.collectors.processes import list_processes
from gapseal.audit.collectors.sockets import socket_owners
from gapseal.audit.facts import (
    Bridge,
    BridgeNetfilter,
    DatapathFacts,
    NetLink,
    NetnsPath,
    PacketSocket,
    Source,
    Status,
    datapath_unknown,
)

LINK_ARGV = ["ip", "-j", "-d", "link", "show"]
CONTAINED_KINDS = frozenset({"bridge", "dummy"})
"""Interface kinds that lead nowhere by themselves (veths are judged by where their peer is)."""
MAX_PIDS = 16
_SOCK_TYPES = {"1": "stream", "2": "dgram", "3": "raw", "10": "packet"}


@dataclass
class _Netns:
    ident: str
    fd: int
    path: str
    names: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    comms: list[str] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    ids: dict[int, str] = field(default_factory=dict)
    error: str | None = None


def parse_links(text: str) -> list[dict[str, Any]]:
    """``ip -j -d link show`` output as a list of objects; raises ``ValueError`` when it is not such a list."""
    doc = json.loads(text)
    if not isinstance(doc, list) or not all(isinstance(x, dict) and "ifname" in x for x in doc):
        raise ValueError("not a list of links")
    return doc


def to_netlink(raw: dict[str, Any], ids: dict[int, str]) -> NetLink:
    """One ``ip -j -d link`` object as a ``NetLink``; ``ids`` maps this namespace's peer ids to namespaces."""
    info = raw.get("linkinfo") or {}
    nsid = raw.get("link_netnsid")
    peer = ids.get(int(nsid)) if isinstance(nsid, int) else None
    lower = raw.get("link") if nsid is None else None
    return NetLink(
        name=str(raw["ifname"]),
        ifindex=int(raw.get("ifindex", 0)),
        kind=info.get("info_kind"),
        link_type=raw.get("link_type"),
        master=raw.get("master"),
        lower=lower if isinstance(lower, str) else None,
        peer_netns=peer,
        peer_unresolved=isinstance(nsid, int) and peer is None,
    )


def way_out(link: NetLink, own: str, contained: set[str]) -> str | None:
    """Why ``link`` (in namespace ``own``) leads off the host past the audited IP hooks; None when it does not.

    ``contained``: the namespaces whose IP hooks (or lack of any way out) govern what a veth into them carries.
    """
    if link.link_type == "loopback" or link.kind in CONTAINED_KINDS:
        return None
    if link.kind == "veth":
        if link.peer_netns is None and not link.peer_unresolved:
            return None  # both ends here
        if link.peer_netns is not None and link.peer_netns in contained and link.peer_netns != own:
            return None
        where = link.peer_netns or "a namespace that could not be identified"
        return f"{link.name} (veth to {where})"
    kind = link.kind or "physical device"
    if link.peer_netns or link.peer_unresolved:
        return f"{link.name} ({kind} on a device of {link.peer_netns or 'another namespace'})"
    if link.lower:
        return f"{link.name} ({kind} on {link.lower})"
    return f"{link.name} ({kind})"


def _open_namespaces(
    trace: Trace, proc: Path, pids: list[int], netns_dirs: list[Path]
) -> tuple[dict[str, _Netns], list[str]]:
    """Every distinct namespace of a process or a name, opened (fd kept so it cannot vanish).

    Also returns the paths of namespaces seen but not openable.
    """
    found: dict[str, _Netns] = {}
    unreadable: list[str] = []

    def add(path: Path, name: str | None, pid: int | None, comm: str | None) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # the process exited, the name was removed
        except OSError as e:
            if e.errno == errno.ESRCH:
                return
            unreadable.append(f"{path}: {e.strerror or e}")
            return
        ident = f"net:[{os.fstat(fd).st_ino}]"
        ns = found.get(ident)
        if ns is None:
            ns = found[ident] = _Netns(ident=ident, fd=fd, path=str(path))
        else:
            os.close(fd)
        if name is not None:
            ns.names.append(name)
        if pid is not None and len(ns.pids) < MAX_PIDS:
            ns.pids.append(pid)
            ns.comms.append(comm or "")

    trace.sources.append(_listing(trace, proc, [str(p) for p in pids]))
    for pid in pids:
        try:
            comm = (proc / str(pid) / "comm").read_text(errors="replace").strip()
        except OSError:
            comm = None
        add(proc / str(pid) / "ns" / "net", None, pid, comm)
    for d in netns_dirs:
        for entry in trace.listdir(d):
            add(entry, entry.name, None, None)
    return found, unreadable


def _listing(trace: Trace, path: Path, names: list[str]) -> Source:
    data = "".join(f"{n}\n" for n in names).encode()
    digest = trace.store.put(data)
    return Source(kind="directory", path=str(path), sha256=digest, size=len(data), stored=True)


def _initial(proc: Path, pids: Iterator[int]) -> str | None:
    for pid in pids:
        with contextlib.suppress(OSError):
            return os.readlink(proc / str(pid) / "ns" / "net")
    return None


def parse_packet_sockets(text: str) -> list[tuple[int, str, str, int]]:
    """``(inode, type, protocol, ifindex)`` of every socket in ``/proc/net/packet``."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 9:
            continue
        _sk, _ref, sock_type, proto, iface, _r, _rmem, _user, inode = parts[:9]
        out.append((int(inode), _SOCK_TYPES.get(sock_type, sock_type), proto.lower().zfill(4), int(iface)))
    return out


def collect_datapath(
    store: RawStore, proc: Path = Path("/proc"), run_netns: Path = Path("/var/run/netns")
) -> DatapathFacts:
    """Collect the paths out below the IP hooks, as seen from the collector's namespace and ``proc``."""
    trace = Trace(store)
    try:
        own = os.readlink(proc / "self" / "ns" / "net")
    except OSError as e:
        return datapath_unknown(f"own network namespace unreadable: {e.strerror or e}")
    pids = sorted(int(d.name) for d in proc.iterdir() if d.name.isdigit())
    initial = _initial(proc, iter(pids))
    found, unreadable = _open_namespaces(trace, proc, pids, [run_netns])
    try:
        fds = {ident: ns.fd for ident, ns in found.items()}
        return _collect(trace, proc, own, initial, found, unreadable, fds)
    finally:
        for ns in found.values():
            os.close(ns.fd)


def _collect(
    trace: Trace,
    proc: Path,
    own: str,
    initial: str | None,
    found: dict[str, _Netns],
    unreadable: list[str],
    fds: dict[str, int],
) -> DatapathFacts:
    problems: list[str] = []
    # the audited namespace: its links first (a dump assigns the peer ids the query then reads)
    out = trace.run(LINK_ARGV)
    own_links: list[NetLink] = []
    status: Status = "ok"
    reason: str | None = None
    try:
        raw = parse_links(out.text) if out.ok else None
        ids = peer_ids(fds)
    except (ValueError, NsidError) as e:
        raw, ids = None, {}
        problems.append(f"{own}: {e}")
    if raw is None:
        status, reason = "unknown", "; ".join(problems) or f"{' '.join(LINK_ARGV)}: {out.error}"
    else:
        own_links = [to_netlink(x, ids) for x in raw]

    others = {ident: ns for ident, ns in found.items() if ident != own}
    for ns in others.values():
        res = trace.run(["nsenter", f"--net=/proc/self/fd/{ns.fd}", *LINK_ARGV], pass_fds=(ns.fd,))
        try:
            if not res.ok:
                raise ValueError(res.error or "failed")
            ns.links = parse_links(res.text)
            ns.ids = peer_ids_in(ns.fd, fds)
        except (ValueError, NsidError) as e:
            ns.error = f"{ns.path}: {e}"

    links_of = {ident: [to_netlink(x, ns.ids) for x in ns.links] for ident, ns in others.items()}
    attached = _attached(own, initial, own_links, links_of, others)
    if own != initial and any(ns.error for ns in others.values()):
        # an unreadable namespace may or may not be linked to this one: it is this host's unless shown otherwise
        for ident, ns in others.items():
            if ns.error and ident != initial:
                attached.add(ident)
    ways: dict[str, list[str]] = {}
    contained = {own}
    for _ in range(len(others) + 1):  # a namespace with no way out lets veths into it count as contained
        changed = False
        for ident in attached:
            w = [r for link in links_of.get(ident, []) if (r := way_out(link, ident, contained)) is not None]
            if others[ident].error is None and not w and ident not in contained:
                contained.add(ident)
                changed = True
            ways[ident] = w
        if not changed:
            break

    namespaces = [
        NetnsPath(
            netns=ident,
            names=sorted(ns.names),
            pids=ns.pids,
            comms=ns.comms,
            status="unknown" if ns.error else "ok",
            reason=ns.error,
            attached=ident in attached,
            interfaces=links_of.get(ident, []),
            ways_out=ways.get(ident, []) if ident in attached else [],
        )
        for ident, ns in sorted(others.items())
        if ident in attached  # another host's namespaces on the same machine are neither this host's nor stable
    ]
    bridges = _bridges(own_links, contained)
    ns_status: Status = "ok"
    ns_reason: str | None = None
    if unreadable and (initial == own or initial is None):
        ns_status, ns_reason = "unknown", "namespaces unreadable: " + "; ".join(unreadable[:8])
    sockets, sock_status, sock_reason = _packet_sockets(trace, proc)
    return DatapathFacts(
        status=status,
        reason=reason,
        sources=trace.sources,
        netns=own,
        initial_netns=initial,
        interfaces=own_links,
        bridges=bridges,
        bridge_netfilter=_bridge_netfilter(trace, proc),
        namespaces=namespaces,
        namespaces_status=ns_status,
        namespaces_reason=ns_reason,
        packet_sockets=sockets,
        packet_sockets_status=sock_status,
        packet_sockets_reason=sock_reason,
    )


def _attached(
    own: str,
    initial: str | None,
    own_links: list[NetLink],
    links_of: dict[str, list[NetLink]],
    others: dict[str, _Netns],
) -> set[str]:
    if own == initial:
        return set(others)
    edges: dict[str, set[str]] = {}
    for ident, links in [(own, own_links), *links_of.items()]:
        for link in links:
            if link.peer_netns:
                edges.setdefault(ident, set()).add(link.peer_netns)
                edges.setdefault(link.peer_netns, set()).add(ident)
    seen, todo = {own}, [own]
    while todo:
        for nxt in edges.get(todo.pop(), set()):
            if nxt not in seen and nxt != initial and nxt in others:
                seen.add(nxt)
                todo.append(nxt)
    return seen - {own}


def _bridges(links: list[NetLink], contained: set[str]) -> list[Bridge]:
    out = []
    for br in (x for x in links if x.kind == "bridge"):
        ports = [x for x in links if x.master == br.name]
        uplinks: list[str] = []
        others: list[str] = []
        for p in ports:
            child = p.kind == "veth" and p.peer_netns is not None and p.peer_netns in contained
            (others if child or p.kind == "tun" else uplinks).append(p.name)
        out.append(Bridge(name=br.name, ports=[p.name for p in ports], uplink_ports=uplinks, other_ports=others))
    return out


def _bridge_netfilter(trace: Trace, proc: Path) -> BridgeNetfilter:
    base = proc / "sys" / "net" / "bridge"
    if not base.is_dir():
        return BridgeNetfilter(loaded=False)
    values: dict[str, int | None] = {}
    for name in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
        data = trace.read(base / name, kind="procfs", limit=63)
        try:
            values[name] = int(data.decode("ascii").strip()) if data is not None else None
        except (UnicodeDecodeError, ValueError):
            values[name] = None
    return BridgeNetfilter(
        loaded=True,
        call_iptables=values["bridge-nf-call-iptables"],
        call_ip6tables=values["bridge-nf-call-ip6tables"],
    )


def _packet_sockets(trace: Trace, proc: Path) -> tuple[list[PacketSocket], Status, str | None]:
    text = trace.read_text(proc / "net" / "packet")
    if text is None:
        return [], "unknown", f"{proc}/net/packet unreadable"
    names: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for _index, name in socket.if_nameindex():
            names[_index] = name
    rows = parse_packet_sockets(text)
    owners = socket_owners(proc, list_processes(proc, None)) if rows else {}
    out = [
        PacketSocket(
            inode=inode,
            type=kind,
            protocol=protocol,
            interface="any" if ifindex == 0 else names.get(ifindex, f"#{ifindex}"),
            processes=sorted(owners.get(inode, []), key=lambda r: r.pid),
        )
        for inode, kind, protocol, ifindex in rows
    ]
    return out, "ok", None
