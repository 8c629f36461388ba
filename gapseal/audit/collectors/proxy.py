"""Proxy variables from everywhere a process gets its environment, and from the environment of every process.

Files: ``/etc/environment``, ``environment.d`` (``/etc``, ``/run``, ``/usr/lib``), ``/etc/profile`` and
``/etc/profile.d/*.sh``, shell start-up files (``/etc/bash.bashrc``, ``/etc/zsh/zshenv``, root's and every home's
``.profile``/``.bashrc``/``.bash_profile``), systemd's ``DefaultEnvironment=`` (``system.conf`` and
``system.conf.d`` in ``/etc``, ``/run``, ``/usr/lib``), and every service unit's ``Environment=`` /
``EnvironmentFile=`` with its drop-ins, the top-level ``service.d/`` drop-ins that apply to every service included.
Processes: ``/proc/<pid>/environ`` of every process in this host's network namespace, not only inference services.

A proxy variable routes traffic off the host through a relay; in an air gap any such setting is a question to answer.
Values are reported with URL credentials masked; environment files and process environments are hashed but not
stored (they may hold secrets).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from gapseal.audit.collectors._common import RawStore, Trace, parse_ini_sections
from gapseal.audit.collectors._common import unreadable as unreadable_files
from gapseal.audit.collectors._units import Unit, parse_env_assignments, parse_env_file
from gapseal.audit.facts import ProcessesFacts, ProxyFacts, ProxySetting, Source

PROXY_NAMES = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy", "rsync_proxy", "socks_proxy")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")
_SHELL_ASSIGN = re.compile(
    r"^\s*(?:export\s+|declare\s+-x\s+|readonly\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$"
)

Origin = Literal[
    "etc_environment",
    "environment_d",
    "profile",
    "profile_d",
    "shell_rc",
    "systemd_unit",
    "systemd_system_conf",
    "process",
]
SHELL_RC_FILES = ("etc/bash.bashrc", "etc/bashrc", "etc/zsh/zshenv", "etc/zshenv", "etc/zsh/zprofile")
HOME_RC_FILES = (".profile", ".bashrc", ".bash_profile", ".bash_login", ".zshenv")
ENVIRONMENT_D_DIRS = ("usr/lib/environment.d", "run/environment.d", "etc/environment.d")
SYSTEM_CONF_D_DIRS = ("usr/lib/systemd/system.conf.d", "run/systemd/system.conf.d", "etc/systemd/system.conf.d")


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


def _homes(root: Path) -> list[Path]:
    homes = [root / "root"]
    base = root / "home"
    if base.is_dir():
        homes += sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
    return homes


def _dropins(trace: Trace, root: Path, dirs: tuple[str, ...]) -> list[Path]:
    """``*.conf`` of ``dirs`` (lowest priority first); a name in a later directory replaces the earlier one."""
    found: dict[str, Path] = {}
    for d in dirs:
        for p in trace.listdir(root / d, "*.conf"):
            found[p.name] = p
    return [found[k] for k in sorted(found)]


def collect_proxy(
    store: RawStore,
    root: Path,
    units: list[Unit],
    processes: ProcessesFacts,
    *,
    proc: Path | None = None,
) -> ProxyFacts:
    """Collect proxy settings under ``root`` and from running processes.

    ``proc``: scan the environment of every process in ``processes.netns`` there; without it only the inference
    processes already found are looked at (unit tests of the file part).
    """
    trace = Trace(store)
    settings: list[ProxySetting] = []

    def env_file(path: Path, origin: Origin, *, record_missing: bool = True) -> None:
        text = trace.read_text(path, store=False, record_missing=record_missing)
        for n, k, v in parse_env_file(text or ""):
            if is_proxy_variable(k):
                settings.append(_setting(k, v, origin, f"{path}:{n}"))

    def shell_file(path: Path, origin: Origin, *, record_missing: bool = False) -> None:
        text = trace.read_text(path, store=False, record_missing=record_missing)
        for n, k, v in parse_shell_profile(text or ""):
            if is_proxy_variable(k):
                settings.append(_setting(k, v, origin, f"{path}:{n}"))

    env_file(root / "etc" / "environment", "etc_environment")
    for f in _dropins(trace, root, ENVIRONMENT_D_DIRS):
        env_file(f, "environment_d")
    shell_file(root / "etc" / "profile", "profile", record_missing=True)
    for script in trace.listdir(root / "etc" / "profile.d", "*.sh"):
        shell_file(script, "profile_d")
    for rel in SHELL_RC_FILES:
        shell_file(root / rel, "shell_rc")
    for home in _homes(root):
        for name in HOME_RC_FILES:
            shell_file(home / name, "shell_rc")
    sysconf = root / "etc" / "systemd" / "system.conf"
    for f in [sysconf, *_dropins(trace, root, SYSTEM_CONF_D_DIRS)]:
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
    scanned, unreadable = 0, 0
    if proc is not None and processes.status == "ok":
        scanned, unreadable = _scan_processes(trace, proc, processes.netns, settings)
    else:
        for p in processes.inference:
            for k, v in p.environment.items():
                if is_proxy_variable(k):
                    settings.append(_setting(k, v, "process", f"pid:{p.pid}"))
    status = "ok"
    reason = None
    if processes.status == "unknown":
        status, reason = "unknown", f"process environments not read: {processes.reason}"
    elif unreadable:
        status, reason = "unknown", f"the environment of {unreadable} process(es) could not be read"
    elif problems := unreadable_files(trace):
        status, reason = "unknown", "; ".join(problems)
    return ProxyFacts(
        status=status,
        reason=reason,
        sources=trace.sources,
        settings=settings,
        proxies=[s for s in settings if not s.is_exclusion and s.value.strip()],
        processes_scanned=scanned,
        processes_unreadable=unreadable,
    )


def _scan_processes(trace: Trace, proc: Path, netns: str | None, settings: list[ProxySetting]) -> tuple[int, int]:
    """Read every process's environment; record (hashed) those with a proxy variable. Returns (read, unreadable)."""
    from gapseal.audit.collectors.processes import list_processes, parse_environ

    scanned = unreadable = 0
    for entry in list_processes(proc, netns):
        path = proc / str(entry.pid) / "environ"
        try:
            data = path.read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        except OSError:
            unreadable += 1
            trace.sources.append(Source(kind="procfs", path=str(path), error="unreadable"))
            continue
        scanned += 1
        hits = [(k, v) for k, v in parse_environ(data).items() if is_proxy_variable(k)]
        if not hits:
            continue
        # provenance of the finding, from the bytes just read (a second read could race the process's exit)
        digest = hashlib.sha256(data).hexdigest()
        trace.sources.append(Source(kind="procfs", path=str(path), sha256=digest, size=len(data), stored=False))
        for k, v in sorted(hits):
            settings.append(_setting(k, v, "process", f"pid:{entry.pid} ({entry.comm})"))
    return scanned, unreadable
