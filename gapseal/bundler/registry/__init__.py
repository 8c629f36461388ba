"""The on-site registry: load a verified bundle into an OCI registry, and pull a bundle back out of one.

gapseal talks to a registry through its own small client, so that what it promises can be read and tested: only the
registry the user names is contacted (plus hosts allowed by name), every read is bounded in size and time, and a pull
accepts only the bundle that was asked for, verified when a key is given. Bottom up:

- ``origin``: scheme, host and port, what "the same host" means;
- ``deadline``: the per-read timeout, the size-scaled deadline of each request and the watchdog enforcing it;
- ``transport``: HTTP to one origin: the one-host rule for redirects, Locations and token realms, credentials to the
  named host only, capped reads, bounded retries of reads;
- ``distribution``: the distribution API calls, each checking what the registry says against what is known;
- ``reference``: addresses, references and repository names; ``signatures``: finding a manifest's referrers;
- ``load`` (``registry load``) and ``pull`` (``bundle pull``, and ``bundle inventory`` of a registry bundle).
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
