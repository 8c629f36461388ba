"""The on-site registry: load a verified bundle into an OCI registry, and pull a bundle back out of one.

gapseal talks to a registry through its own small client (``transport``: one host, capped reads, deadlines;
``distribution``: the API calls, each checking what the registry says), so that what it promises can be read and
tested: only the registry the user names is contacted (plus hosts allowed by name), every read is bounded in size
and time, and a pull accepts only the bundle that was asked for, verified when a key is given.
"""

from __future__ import annotations

from gapseal.bundler.registry.load import (
    DEFAULT_CONCURRENCY,
    LoadResult,
    connect,
    load_bundle,
    push_verified,
    result_dict,
)
from gapseal.bundler.registry.pull import DEFAULT_MAX_BLOB, PulledBundle, pull_bundle
from gapseal.bundler.registry.reference import bundle_repository, fallback_tag, parse_reference, parse_registry
from gapseal.bundler.registry.transport import DEFAULT_TIMEOUT, RegistryError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_BLOB",
    "DEFAULT_TIMEOUT",
    "LoadResult",
    "PulledBundle",
    "RegistryError",
    "bundle_repository",
    "connect",
    "fallback_tag",
    "load_bundle",
    "parse_reference",
    "parse_registry",
    "pull_bundle",
    "push_verified",
    "result_dict",
]
