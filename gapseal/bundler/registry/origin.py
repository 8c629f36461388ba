"""Scheme, host and port: what "the same host" means for the one-host rule, parsed without any lookup."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from gapseal.errors import UsageError

_HOSTPORT = re.compile(r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?$")


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: what "the same host" means here."""

    scheme: str
    host: str
    """Lower case; an IPv6 address in brackets."""
    port: int

    @property
    def hostport(self) -> str:
        """``HOST:PORT`` as the user writes it."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.hostport}"


def parse_hostport(value: str, *, scheme: str) -> Origin:
    """``HOST:PORT`` (or ``SCHEME://HOST:PORT``) as an origin; a usage error otherwise."""
    if "://" in value:
        scheme, _, value = value.partition("://")
    m = _HOSTPORT.match(value)
    port = int(m["port"]) if m and m["port"] else (443 if scheme == "https" else 80)
    if m is None or scheme not in ("http", "https") or not 0 < port < 65536:
        raise UsageError(f"{value!r} is not a registry address; use HOST:PORT (e.g. 127.0.0.1:5000)")
    return Origin(scheme, m["host"].lower(), port)


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL; None for anything else."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Origin(parts.scheme, host.lower(), port or (443 if parts.scheme == "https" else 80))
