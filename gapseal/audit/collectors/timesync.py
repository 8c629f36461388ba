"""Time services: the servers chrony, systemd-timesyncd and ntpsec/ntp are configured to ask.

- chrony (chrony.conf(5)): ``etc/chrony/chrony.conf`` or ``etc/chrony.conf``; ``server``, ``pool`` and ``peer``
  directives; ``include`` globs, ``confdir`` (``*.conf``) and ``sourcedir`` (``*.sources``) followed. ``refclock``
  is a local clock.
- systemd-timesyncd (timesyncd.conf(5)): ``etc/systemd/timesyncd.conf`` and ``timesyncd.conf.d`` in ``/usr/lib``,
  ``/run``, ``/etc``; ``NTP=`` and ``FallbackNTP=``, plus networkd's ``NTP=`` (files and link state). timesyncd counts
  as present when it is enabled (a ``*.wants`` link) or installed and not masked (``timedatectl set-ntp true`` can
  start it any time); when no server is configured anywhere it asks its compiled-in ``FallbackNTP`` (Debian's
  build: the ``debian.pool.ntp.org`` pool) unless ``FallbackNTP=`` is set empty: that is recorded as a server.
- ntpsec / ntp (ntp.conf(5)): ``etc/ntpsec/ntp.conf``, ``etc/ntp.conf``; ``server``, ``pool``, ``peer``;
  ``includefile`` followed. ``127.127.*`` addresses are reference clocks (local).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace, network, under_root, unreadable
from gapseal.audit.collectors._networkd import accumulate, network_servers
from gapseal.audit.facts import TimeFacts, TimeServer

TIMESYNCD_COMPILED_FALLBACK = "0.debian.pool.ntp.org 1.debian.pool.ntp.org 2.debian.pool.ntp.org 3.debian.pool.ntp.org"
"""Debian's systemd build sets ``-Dntp-servers`` to the Debian pool (debian/rules of the systemd source package)."""
TIMESYNCD_DROPIN_DIRS = (
    "usr/lib/systemd/timesyncd.conf.d",
    "run/systemd/timesyncd.conf.d",
    "etc/systemd/timesyncd.conf.d",
)
TIMESYNCD_BINARIES = ("lib/systemd/systemd-timesyncd", "usr/lib/systemd/systemd-timesyncd")
_SOURCE_DIRECTIVES = {"server", "pool", "peer"}
_MAX_FILES = 128


def _server(daemon: str, directive: str, address: str, location: str) -> TimeServer:
    net = None
    local = False
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
        net = network(str(ip))
        local = ip.is_loopback or (ip.version == 4 and str(ip).startswith("127.127."))
    except ValueError:
        local = address == "localhost"
    return TimeServer(
        daemon=daemon,
        directive=directive,
        address=address,
        network=net,
        local=local,
        location=location,
    )


def _sources_file(trace: Trace, root: Path, path: Path, daemon: str, out: list[TimeServer], budget: list[int]) -> None:
    """Read one chrony/ntp configuration file and the files it includes."""
    if budget[0] <= 0:
        return
    budget[0] -= 1
    text = trace.read_text(path, record_missing=False)
    for n, raw in enumerate((text or "").splitlines(), 1):
        line = raw.split("#", 1)[0].split("!", 1)[0].strip()
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        if len(words) < 2:
            continue
        directive = words[0].lower()
        if directive in _SOURCE_DIRECTIVES:
            out.append(_server(daemon, directive, words[1], f"{path}:{n}"))
        elif directive in {"include", "includefile"}:
            target = under_root(root, words[1])
            for inc in sorted(target.parent.glob(target.name)):
                _sources_file(trace, root, inc, daemon, out, budget)
        elif directive in {"confdir", "sourcedir"} and daemon == "chrony":
            pattern = "*.conf" if directive == "confdir" else "*.sources"
            for d in words[1:]:
                for inc in trace.listdir(under_root(root, d), pattern):
                    _sources_file(trace, root, inc, daemon, out, budget)


def _timesyncd_enabled(root: Path) -> bool:
    etc = root / "etc/systemd/system"
    unit = etc / "systemd-timesyncd.service"
    if unit.is_symlink() and os.readlink(unit) == "/dev/null":
        return False  # masked
    if any(os.path.lexists(d / "systemd-timesyncd.service") for d in etc.glob("*.wants")):
        return True
    return any((root / b).exists() for b in TIMESYNCD_BINARIES)


def collect_time(store: RawStore, root: Path) -> TimeFacts:
    """Collect the configured time servers under ``root``."""
    trace = Trace(store)
    servers: list[TimeServer] = []
    daemons: list[str] = []
    budget = [_MAX_FILES]
    for daemon, paths in (
        ("chrony", ["etc/chrony/chrony.conf", "etc/chrony.conf"]),
        ("ntpsec", ["etc/ntpsec/ntp.conf"]),
        ("ntp", ["etc/ntp.conf"]),
    ):
        for rel in paths:
            path = root / rel
            if path.is_file():
                daemons.append(daemon)
                _sources_file(trace, root, path, daemon, servers, budget)
                break
    link = network_servers(trace, root)
    link_ntp = [s for s in link if s.kind == "NTP"]
    servers += [_server("networkd", "NTP", s.value, s.location) for s in link_ntp]
    if _timesyncd_enabled(root):
        daemons.append("timesyncd")
        main = root / "etc/systemd/timesyncd.conf"
        files = [main]
        dropins: dict[str, Path] = {}
        for d in TIMESYNCD_DROPIN_DIRS:
            for p in trace.listdir(root / d, "*.conf"):
                dropins[p.name] = p
        files += [dropins[k] for k in sorted(dropins)]
        texts = [(f, t) for f in files if (t := trace.read_text(f, record_missing=f == main)) is not None]
        values = accumulate(texts, "Time", {"NTP", "FallbackNTP"})
        fallback_set = any(line.strip().startswith("FallbackNTP=") for _, t in texts for line in t.splitlines())
        servers += [_server("timesyncd", "NTP", v, loc) for loc, v in values["NTP"]]
        servers += [_server("timesyncd", "FallbackNTP", v, loc) for loc, v in values["FallbackNTP"]]
        if not values["NTP"] and not link_ntp and not fallback_set:
            servers += [
                _server("timesyncd", "compiled-in FallbackNTP", v, "no NTP= and no FallbackNTP= configured")
                for v in TIMESYNCD_COMPILED_FALLBACK.split()
            ]
    problems = unreadable(trace)
    return TimeFacts(
        status="unknown" if problems else "ok",
        reason="; ".join(problems) or None,
        sources=trace.sources,
        daemons=daemons,
        servers=servers,
    )
