"""Which network namespace a link's ``link_netnsid`` names: the kernel's peer ids, read over rtnetlink.

``ip -j link show`` prints a veth's peer (or a macvlan's lower device) in another namespace as ``link_netnsid``: a
number private to the namespace that printed it. The kernel maps such a number back to a namespace only on request:
``RTM_GETNSID`` with ``NETNSA_FD`` (an open namespace file) answers with the id the *asking* namespace gives it (-1:
none assigned, so no link of the asking namespace points there). Asking from another namespace needs the asking
thread moved there with ``setns`` (per thread for network namespaces); a short-lived thread does it, so the
collector itself never leaves its namespace. Nothing is assigned or changed: ``RTM_GETNSID`` only reads.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
from collections.abc import Mapping

CLONE_NEWNET = 0x40000000
RTM_NEWNSID = 88
RTM_GETNSID = 90
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NETNSA_NSID = 1
NETNSA_FD = 3
_HEADER = struct.Struct("=IHHII")


class NsidError(OSError):
    """The namespace could not be entered or asked."""


def _ask(sock: socket.socket, fd: int, seq: int) -> int:
    body = struct.pack("=B3x", socket.AF_UNSPEC) + struct.pack("=HHI", 8, NETNSA_FD, fd)
    sock.send(_HEADER.pack(_HEADER.size + len(body), RTM_GETNSID, NLM_F_REQUEST, seq, 0) + body)
    data = sock.recv(65536)
    length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data)
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", data, _HEADER.size)
        raise NsidError(-error, f"RTM_GETNSID: {os.strerror(-error)}")
    if kind != RTM_NEWNSID:
        raise NsidError(0, f"RTM_GETNSID: unexpected reply type {kind}")
    offset = _HEADER.size + 4
    while offset + 4 <= length:
        rta_len, rta_type = struct.unpack_from("=HH", data, offset)
        if rta_len < 4:
            break
        if rta_type == NETNSA_NSID:
            return int(struct.unpack_from("=i", data, offset + 4)[0])
        offset += (rta_len + 3) & ~3
    return -1


def peer_ids(targets: Mapping[str, int]) -> dict[int, str]:
    """``{nsid: name}`` for every target (name → open namespace fd) the current network namespace has an id for.

    Raises ``NsidError``.
    """
    out: dict[int, str] = {}
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:  # NETLINK_ROUTE
            sock.settimeout(5.0)
            for seq, (name, fd) in enumerate(targets.items(), start=1):
                nsid = _ask(sock, fd, seq)
                if nsid >= 0:
                    out[nsid] = name
    except NsidError:
        raise
    except OSError as e:
        raise NsidError(e.errno or 0, f"rtnetlink: {e.strerror or e}") from e
    return out


def peer_ids_in(netns_fd: int, targets: Mapping[str, int]) -> dict[int, str]:
    """``peer_ids`` asked from inside the namespace ``netns_fd`` (by a thread that enters it and ends)."""
    result: dict[int, str] = {}
    failure: list[BaseException] = []

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(netns_fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            failure.append(NsidError(err, f"setns: {os.strerror(err)}"))
            return
        try:
            result.update(peer_ids(targets))
        except NsidError as e:
            failure.append(e)

    thread = threading.Thread(target=run, name="gapseal-nsid", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result
