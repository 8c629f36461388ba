"""Listening sockets of this network namespace, with the processes that hold them.

Read from ``/proc/net/{tcp,tcp6,udp,udp6}`` (which show the reading task's network namespace) and mapped to processes
through ``/proc/<pid>/fd/*`` links ``socket:[inode]``. TCP sockets in LISTEN and UDP sockets bound but not connected
are "listening".
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace, address_class
from gapseal.audit.collectors.processes import ProcEntry
from gapseal.audit.facts import Family, ListeningSocket, ProcessRef, SocketsFacts

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


def decode_address(hex_addr: str) -> str:
    """Decode a ``/proc/net`` address (host-endian 32-bit words) into text."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(struct.pack("=I", struct.unpack(">I", raw)[0])))
    words = struct.unpack(">4I", raw)
    addr = ipaddress.IPv6Address(b"".join(struct.pack("=I", w) for w in words))
    if addr.ipv4_mapped is not None:  # the form ss and newer Pythons print: ::ffff:127.0.0.1
        return f"::ffff:{addr.ipv4_mapped}"
    return str(addr)


def parse_proc_net(text: str, protocol: str, family: Family) -> list[tuple[str, int, int]]:
    """Return ``(address, port, inode)`` of the listening sockets in one ``/proc/net`` table."""
    want = TCP_LISTEN if protocol == "tcp" else UDP_UNCONNECTED
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        local, remote, state, inode = parts[1], parts[2], parts[3], parts[9]
        if state != want:
            continue
        if protocol == "udp" and not remote.endswith(":0000"):
            continue
        addr_hex, port_hex = local.split(":")
        out.append((decode_address(addr_hex), int(port_hex, 16), int(inode)))
    return out


def bind_scope(address: str) -> str:
    """``all`` for the unspecified address, ``loopback`` for loopback, else ``specific``."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "all"
    if ip.is_loopback:
        return "loopback"
    return "specific"


def socket_owners(proc: Path, processes: list[ProcEntry]) -> dict[int, list[ProcessRef]]:
    """Map socket inodes to the processes holding them (unreadable fd tables are skipped)."""
    owners: dict[int, list[ProcessRef]] = {}
    for p in processes:
        fd_dir = proc / str(p.pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        seen: set[int] = set()
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode not in seen:
                    seen.add(inode)
                    owners.setdefault(inode, []).append(ProcessRef(pid=p.pid, comm=p.comm, exe=p.exe))
    return owners


def collect_sockets(store: RawStore, processes: list[ProcEntry], proc: Path = Path("/proc")) -> SocketsFacts:
    """Collect the listening sockets visible in ``{proc}/net`` and their owning processes."""
    trace = Trace(store)
    found: list[tuple[str, Family, str, int, int]] = []
    problems = []
    fam: Family
    for name, protocol, fam in (
        ("tcp", "tcp", "inet"),
        ("tcp6", "tcp", "inet6"),
        ("udp", "udp", "inet"),
        ("udp6", "udp", "inet6"),
    ):
        text = trace.read_text(proc / "net" / name)
        if text is None:
            if fam == "inet6" and not socket.has_ipv6:
                continue
            if fam == "inet6" and not (proc / "net" / "if_inet6").exists():
                continue  # IPv6 disabled in this kernel/namespace: no IPv6 sockets can exist
            problems.append(f"{proc}/net/{name} unreadable")
            continue
        for addr, port, inode in parse_proc_net(text, protocol, fam):
            found.append((protocol, fam, addr, port, inode))
    owners = socket_owners(proc, processes)
    listening = []
    for protocol, fam, addr, port, inode in sorted(found, key=lambda x: (x[0], x[3], x[1], x[2])):
        listening.append(
            ListeningSocket(
                protocol=protocol,
                family=fam,
                address=addr,
                port=port,
                bind_scope=bind_scope(addr),
                address_class=address_class(addr),
                inode=inode,
                processes=sorted(owners.get(inode, []), key=lambda r: r.pid),
            )
        )
    return SocketsFacts(
        status="unknown" if problems else "ok",
        reason="; ".join(problems) or None,
        sources=trace.sources,
        listening=listening,
        exposed=[s for s in listening if s.bind_scope != "loopback"],
    )
