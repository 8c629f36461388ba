"""Registry addresses, bundle references and repository names, checked before any connection (never resolved)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from gapseal.bundler.registry.transport import Origin, parse_hostport
from gapseal.errors import UsageError

BUNDLE_REPOSITORY_PREFIX = "gapseal/"
"""Bundles live in ``gapseal/<bundle name>``; images in a repository named after the image."""
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")
REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def _is_registry_host(value: str) -> bool:
    """A registry host as image references spell it: has a port or a dot, or is ``localhost`` (never a bare name)."""
    return bool(_HOST.match(value)) and ("." in value or ":" in value or value == "localhost")


def parse_registry(value: str) -> str:
    """Check a ``HOST[:PORT]`` given on the command line."""
    if not _is_registry_host(value):
        raise UsageError(f"{value!r} is not a registry address; use HOST:PORT (e.g. 127.0.0.1:5000)")
    return value


def registry_origin(host: str, *, insecure: bool) -> Origin:
    """The origin gapseal talks to for ``HOST[:PORT]``: plain HTTP with ``--insecure``, else HTTPS."""
    return parse_hostport(parse_registry(host), scheme="http" if insecure else "https")


def allowed_origins(values: Iterable[str], *, insecure: bool) -> frozenset[Origin]:
    """The ``--allow-host HOST:PORT`` values (``SCHEME://HOST:PORT`` to name another scheme) as origins."""
    out = set()
    for value in values:
        bare = value.split("://", 1)[-1]
        if not _is_registry_host(bare):
            raise UsageError(f"--allow-host {value!r} is not HOST:PORT")
        out.add(parse_hostport(value, scheme="http" if insecure else "https"))
    return frozenset(out)


def parse_reference(reference: str) -> tuple[str, str, str]:
    """Split ``HOST:PORT/REPO:TAG`` into (host, repo, tag)."""
    host, sep, rest = reference.partition("/")
    repo, _, tag = rest.rpartition(":")
    if not sep or "/" in tag or not _is_registry_host(host) or not REPOSITORY.match(repo) or not _TAG.match(tag):
        raise UsageError(
            f"{reference!r} is not a bundle reference; use HOST:PORT/gapseal/NAME:VERSION",
            hint="e.g. 127.0.0.1:5000/gapseal/clinic:1.0.0",
        )
    return host, repo, tag


def bundle_repository(name: str) -> str:
    """The repository a bundle named ``name`` is pushed to."""
    return f"{BUNDLE_REPOSITORY_PREFIX}{name}"


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for the referrers of ``digest``: ``sha256-<hex>``."""
    return digest.replace(":", "-")
