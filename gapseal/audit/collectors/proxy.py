"""Proxy variables: system environment, login profiles, systemd units and running inference processes.

A proxy variable routes traffic off the host through a relay; in an air gap any such setting is a question to answer.
Values are reported with URL credentials masked, and environment files are hashed but not stored (they may hold
secrets).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from gapseal.audit.collectors._common import RawStore, Trace, parse_ini_sections
from gapseal.audit.collectors._units import Unit, parse_env_assignments, parse_env_file
from gapseal.audit.facts import ProcessesFacts, ProxyFacts, ProxySetting

PROXY_NAMES = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy", "rsync_proxy", "socks_proxy")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")
_SHELL_ASSIGN = re.compile(
    r"^\s*(?:export\s+|declare\s+-x\s+|readonly\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$"
)

Origin = Literal["etc_environment", "profile_d", "systemd_unit", "systemd_system_conf", "process"]


def is_proxy_variable(name: str) -> bool:
    """Return True for ``http_proxy``, ``HTTPS_PROXY``, ``no_proxy`` and the other proxy variables, in any case."""
    return name.lower() in PROXY_NAMES


def mask_credentials(value: str) -> str:
    """Replace the userinfo of URLs in ``value`` by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", value)


def _setting(variable: str, value: str, origin: Origin, location: str) -> ProxySetting:
    return ProxySetting(
        variable=variable,
        name=variable.lower(),
        value=mask_credentials(value),
        is_exclusion=variable.lower() == "no_proxy",
        origin=origin,
        location=location,
    )


def parse_shell_profile(text: str) -> list[tuple[int, str, str]]:
    """Find ``[export] VAR=value`` assignments in a shell profile script (no evaluation), as ``(line, key, value)``."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("#") else ""
        m = _SHELL_ASSIGN.match(line)
        if not m:
            continue
        value = m.group("value").strip().rstrip(";").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.append((n, m.group("key"), value))
    return out


def collect_proxy(store: RawStore, root: Path, units: list[Unit], processes: ProcessesFacts) -> ProxyFacts:
    """Collect proxy settings under ``root`` and from the inference processes already found."""
    trace = Trace(store)
    settings: list[ProxySetting] = []
    env_file = root / "etc" / "environment"
    text = trace.read_text(env_file, store=False)
    if text is not None:
        for n, k, v in parse_env_file(text):
            if is_proxy_variable(k):
                settings.append(_setting(k, v, "etc_environment", f"{env_file}:{n}"))
    for script in trace.listdir(root / "etc" / "profile.d", "*.sh"):
        t = trace.read_text(script, store=False)
        for n, k, v in parse_shell_profile(t or ""):
            if is_proxy_variable(k):
                settings.append(_setting(k, v, "profile_d", f"{script}:{n}"))
    sysconf = root / "etc" / "systemd" / "system.conf"
    conf_files = [sysconf] + trace.listdir(root / "etc" / "systemd" / "system.conf.d", "*.conf")
    for f in conf_files:
        t = trace.read_text(f, store=False, record_missing=f == sysconf)
        if t is None:
            continue
        default_env = parse_ini_sections(t).get("Manager", {}).get("DefaultEnvironment", "")
        for k, v in parse_env_assignments(default_env):
            if is_proxy_variable(k):
                settings.append(_setting(k, v, "systemd_system_conf", str(f)))
    for unit in units:
        hits = [(k, v) for k, v in unit.environment.items() if is_proxy_variable(k)]
        if not hits:
            continue
        for f in unit.files:
            trace.read(f, store=False)
        for k, v in sorted(hits):
            settings.append(_setting(k, v, "systemd_unit", unit.env_origin.get(k, str(unit.path))))
    for p in processes.inference:
        for k, v in p.environment.items():
            if is_proxy_variable(k):
                settings.append(_setting(k, v, "process", f"pid:{p.pid}"))
    status = "ok"
    reason = None
    if processes.status == "unknown":
        status, reason = "unknown", f"process environments not read: {processes.reason}"
    return ProxyFacts(
        status=status,
        reason=reason,
        sources=trace.sources,
        settings=settings,
        proxies=[s for s in settings if not s.is_exclusion and s.value.strip()],
    )
