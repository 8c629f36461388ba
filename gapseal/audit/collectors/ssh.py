"""sshd authentication settings: ``sshd -T`` (the effective configuration) where it runs, else the config parsed.

``sshd -T`` is only used on a real root (``/``): under a prefix it would read the machine's own ``Include`` files.
Parsing follows sshd_config(5): keywords are case-insensitive, the first value obtained wins, ``Include`` globs are
expanded in place (relative to ``/etc/ssh``), and ``Match`` blocks are counted but not applied.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace, under_root
from gapseal.audit.facts import SshFacts

DEFAULTS = {
    "passwordauthentication": "yes",
    "permitrootlogin": "prohibit-password",
    "pubkeyauthentication": "yes",
    "kbdinteractiveauthentication": "yes",
    "permitemptypasswords": "no",
}
"""OpenSSH's compiled-in defaults (sshd_config(5), OpenSSH 7.0 and later) for the settings reported by name."""

_MULTI = {"listenaddress", "port", "hostkey", "acceptenv", "subsystem", "hostcertificate", "include"}
_MAX_INCLUDES = 64


def parse_sshd_t(text: str) -> tuple[dict[str, str], list[str], list[int]]:
    """Parse ``sshd -T`` output into settings (repeated keys joined by spaces), listen addresses and ports."""
    settings: dict[str, str] = {}
    listen: list[str] = []
    ports: list[int] = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        key = key.lower()
        if key == "listenaddress":
            listen.append(value)
        elif key == "port" and value.isdigit():
            ports.append(int(value))
        settings[key] = f"{settings[key]} {value}" if key in settings and key in _MULTI else value
    return settings, listen, ports


def parse_sshd_config(root: Path, path: Path, trace: Trace) -> tuple[dict[str, str], list[str], list[int], int]:
    """Parse ``path`` and its Includes; returns settings, listen addresses, ports and the number of Match blocks."""
    settings: dict[str, str] = {}
    listen: list[str] = []
    ports: list[int] = []
    matches = 0
    budget = [_MAX_INCLUDES]

    def visit(p: Path) -> None:
        nonlocal matches
        text = trace.read_text(p)
        if text is None:
            return
        in_match = False
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.replace("=", " ", 1).split(None, 1) if "=" in line.split(None, 1)[0] else line.split(None, 1)
            key = parts[0].lower()
            value = parts[1].strip() if len(parts) > 1 else ""
            if key == "match":
                matches += 1
                in_match = True
                continue
            if in_match:
                continue
            if key == "include":
                for pattern in shlex.split(value):
                    base = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                    host = under_root(root, base)
                    for inc in sorted(host.parent.glob(host.name)):
                        if budget[0] <= 0:
                            return
                        budget[0] -= 1
                        visit(inc)
                continue
            if key == "listenaddress":
                listen.append(value)
            elif key == "port" and value.isdigit():
                ports.append(int(value))
            if key not in settings:
                settings[key] = value
            elif key in _MULTI:
                settings[key] = f"{settings[key]} {value}"

    visit(path)
    return settings, listen, ports, matches


def collect_ssh(store: RawStore, root: Path) -> SshFacts:
    """Collect sshd's authentication settings on the host under ``root``."""
    trace = Trace(store)
    config = root / "etc" / "ssh" / "sshd_config"
    has_binary = (root / "usr" / "sbin" / "sshd").exists() or (root == Path("/") and shutil.which("sshd") is not None)
    if not config.exists() and not has_binary:
        trace.read(config)
        return SshFacts(status="ok", reason="sshd is not installed", sources=trace.sources, present=False)
    problems = []
    if root == Path("/") and shutil.which("sshd") is not None:
        out = trace.run(["sshd", "-T"])
        if out.ok:
            settings, listen, ports = parse_sshd_t(out.text)
            return _facts(trace, "sshd -T", settings, listen, ports, 0, defaults=False)
        problems.append(f"sshd -T failed ({out.error}); parsed {config} instead")
    if not config.exists():
        trace.read(config)
        return SshFacts(
            status="unknown", reason=f"sshd is installed but {config} is missing", sources=trace.sources, present=True
        )
    settings, listen, ports, matches = parse_sshd_config(root, config, trace)
    facts = _facts(trace, "sshd_config", settings, listen, ports, matches, defaults=True)
    return facts.model_copy(update={"reason": "; ".join(problems) or None})


def _facts(
    trace: Trace,
    method: str,
    settings: dict[str, str],
    listen: list[str],
    ports: list[int],
    matches: int,
    *,
    defaults: bool,
) -> SshFacts:
    def get(key: str) -> str | None:
        v = settings.get(key)
        if v is None and key == "kbdinteractiveauthentication":
            v = settings.get("challengeresponseauthentication")  # the older name of the same setting
        if v is None and defaults:
            v = DEFAULTS.get(key)
        if v is None:
            return None
        v = v.lower()
        return "prohibit-password" if key == "permitrootlogin" and v == "without-password" else v

    return SshFacts(
        status="ok",
        sources=trace.sources,
        present=True,
        method=method,
        settings=dict(sorted(settings.items())),
        password_authentication=get("passwordauthentication"),
        permit_root_login=get("permitrootlogin"),
        pubkey_authentication=get("pubkeyauthentication"),
        kbd_interactive_authentication=get("kbdinteractiveauthentication"),
        permit_empty_passwords=get("permitemptypasswords"),
        listen_addresses=listen,
        ports=ports or ([22] if defaults else []),
        match_blocks=matches,
    )
