"""Log retention: systemd-journald (``journald.conf`` and drop-ins) and auditd (``auditd.conf``, rules)."""

from __future__ import annotations

import re
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace, parse_ini_sections
from gapseal.audit.facts import AuditdFacts, JournaldFacts, LoggingFacts

_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "M": 2629800, "month": 2629800, "months": 2629800,
    "y": 31557600, "year": 31557600, "years": 31557600,
}  # fmt: skip
"""systemd.time(7) time span units (a month is 30.44 days, a year 365.25 days)."""
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")


def parse_timespan(text: str) -> int | None:
    """Seconds in a systemd time span (``1month``, ``2d 12h``, ``3600``); None for empty, 0 or malformed."""
    text = text.strip()
    if not text:
        return None
    total = 0.0
    pos = 0
    for m in _SPAN.finditer(text):
        if text[pos : m.start()].strip():
            return None
        unit = m.group(2) or "s"
        factor = _UNITS.get(unit) or _UNITS.get(unit.lower())
        if factor is None:
            return None
        total += float(m.group(1)) * factor
        pos = m.end()
    if text[pos:].strip():
        return None
    return int(total) or None


JOURNALD_DROPIN_DIRS = ("usr/lib/systemd/journald.conf.d", "etc/systemd/journald.conf.d", "run/systemd/journald.conf.d")


def collect_journald(trace: Trace, root: Path) -> JournaldFacts:
    """Effective journald settings under ``root``."""
    main = root / "etc" / "systemd" / "journald.conf"
    files = [main]
    dropins: dict[str, Path] = {}
    for d in JOURNALD_DROPIN_DIRS:
        for p in trace.listdir(root / d, "*.conf"):
            dropins[p.name] = p
    files += [dropins[k] for k in sorted(dropins)]
    settings: dict[str, str] = {}
    present = False
    for f in files:
        text = trace.read_text(f, record_missing=f == main)
        if text is None:
            continue
        present = True
        settings.update(parse_ini_sections(text).get("Journal", {}))
    storage = settings.get("Storage", "auto").lower()
    persistent = storage == "persistent" or (storage == "auto" and (root / "var" / "log" / "journal").is_dir())
    return JournaldFacts(
        present=present,
        settings=dict(sorted(settings.items())),
        storage=storage,
        persistent=persistent,
        max_retention_sec=parse_timespan(settings.get("MaxRetentionSec", "")),
        forward_to_syslog=settings.get("ForwardToSyslog"),
    )


def parse_auditd_conf(text: str) -> dict[str, str]:
    """``key = value`` lines of auditd.conf, keys lower-cased."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if "=" in line:
            k, _, v = line.partition("=")
            out[k.strip().lower()] = v.strip()
    return dict(sorted(out.items()))


def collect_logging(store: RawStore, root: Path) -> LoggingFacts:
    """Collect journald and auditd retention settings under ``root``."""
    trace = Trace(store)
    journald = collect_journald(trace, root)
    conf = root / "etc" / "audit" / "auditd.conf"
    text = trace.read_text(conf)
    rules = [str(p) for p in trace.listdir(root / "etc" / "audit" / "rules.d", "*.rules")]
    auditd = AuditdFacts(present=text is not None, settings=parse_auditd_conf(text) if text else {}, rules_files=rules)
    return LoggingFacts(status="ok", sources=trace.sources, journald=journald, auditd=auditd)
