"""systemd-networkd configuration and runtime link state: the DNS and NTP servers it hands to resolved and timesyncd.

``.network`` files (systemd.network(5)) in ``/usr/lib``, ``/lib``, ``/run`` and ``/etc`` ``systemd/network``: a file
in a higher-priority directory replaces one of the same name, drop-ins ``<name>.d/*.conf`` apply on top; ``DNS=`` and
``NTP=`` accumulate over lines and an empty assignment resets the list. Runtime state: ``/run/systemd/netif/links/*``
(networkd: ``DNS=``, ``NTP=`` of each link, DHCP-learned servers included) and ``/run/systemd/resolve/netif/*``
(resolved's per-link ``SERVERS=``, set by networkd or ``resolvectl dns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gapseal.audit.collectors._common import Trace

NETWORK_DIRS = ("usr/lib/systemd/network", "lib/systemd/network", "run/systemd/network", "etc/systemd/network")
"""Lowest priority first."""


@dataclass(frozen=True)
class LinkServer:
    """One DNS or NTP server named in networkd configuration or link state."""

    kind: str
    """``DNS`` or ``NTP``."""
    value: str
    origin: str
    """``networkd``: a .network file; ``networkd-link``: networkd runtime state; ``resolved-link``: resolved's."""
    location: str


def accumulate(files: list[tuple[Path, str]], section: str, keys: set[str]) -> dict[str, list[tuple[str, str]]]:
    """List settings over ``files`` in order: each value adds to the list, an empty assignment empties it."""
    out: dict[str, list[tuple[str, str]]] = {k: [] for k in keys}
    for path, text in files:
        current = ""
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1].strip()
                continue
            if current != section or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip()
            if key not in keys:
                continue
            if not value.strip():
                out[key] = []
            else:
                out[key] += [(f"{path}:{n}", v) for v in value.split()]
    return out


def network_servers(trace: Trace, root: Path) -> list[LinkServer]:
    """Every ``DNS=`` and ``NTP=`` of the effective .network files (drop-ins applied) and of the runtime link state."""
    files: dict[str, Path] = {}
    for d in NETWORK_DIRS:
        for p in trace.listdir(root / d, "*.network"):
            files[p.name] = p
    servers: list[LinkServer] = []
    for name in sorted(files):
        parts = [files[name]]
        dropins: dict[str, Path] = {}
        for d in NETWORK_DIRS:
            for p in trace.listdir(root / d / f"{name}.d", "*.conf"):
                dropins[p.name] = p
        parts += [dropins[k] for k in sorted(dropins)]
        texts = [(path, trace.read_text(path) or "") for path in parts]
        values = accumulate(texts, "Network", {"DNS", "NTP"})
        for key, items in values.items():
            servers += [LinkServer(key, v, "networkd", loc) for loc, v in items]
    for d, origin, keys in (
        ("run/systemd/netif/links", "networkd-link", {"DNS": "DNS", "NTP": "NTP"}),
        ("run/systemd/resolve/netif", "resolved-link", {"SERVERS": "DNS"}),
    ):
        for p in trace.listdir(root / d):
            text = trace.read_text(p)
            for n, raw in enumerate((text or "").splitlines(), 1):
                key, _, value = raw.strip().partition("=")
                if key in keys:
                    servers += [LinkServer(keys[key], v, origin, f"{p}:{n}") for v in value.split()]
    return servers
