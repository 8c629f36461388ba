"""sshd settings: authentication, and the forwarding and tunnelling an operator could carry data out through.

Where sshd runs on the audited root (``/``) the effective configuration comes from ``sshd -T``, and each ``Match``
block's from ``sshd -T -C <spec>`` when its criteria name one concrete connection (``User``, ``Host``, ``Address``,
``LocalAddress``, ``LocalPort``, ``RDomain``). Under a prefix, or for criteria ``-C`` cannot express (``Group``,
patterns, negations), the configuration is parsed as sshd_config(5) says: keywords are case-insensitive, the first
value obtained wins, ``Include`` globs expand in place (relative to ``/etc/ssh``), a ``Match`` block runs to the next
``Match`` or to the end of the file it is in (an Include restores the enclosing block, as sshd does), and for a
connection a block matches, the block's values override the global ones, the first matching block winning.

A connection matching block *i* is assumed to match block *i*, every ``Match all`` block and every block with the
same criteria, and no other. Other blocks might also match it; where one of them would turn forwarding off the
result errs towards "open" (a false finding, never a false pass), and any block that turns forwarding on is
itself a context checked here.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace, under_root
from gapseal.audit.facts import SshFacts, SshForwarding

DEFAULTS = {
    "passwordauthentication": "yes",
    "permitrootlogin": "prohibit-password",
    "pubkeyauthentication": "yes",
    "kbdinteractiveauthentication": "yes",
    "permitemptypasswords": "no",
}
"""OpenSSH's compiled-in defaults (sshd_config(5), OpenSSH 7.0 and later) for the settings reported by name."""

FORWARDING_DEFAULTS = {
    "allowtcpforwarding": "yes",
    "allowstreamlocalforwarding": "yes",
    "permittunnel": "no",
    "gatewayports": "no",
    "permitopen": "any",
    "permitlisten": "any",
    "disableforwarding": "no",
}
"""OpenSSH's defaults for the forwarding keywords (sshd_config(5); ``sshd -T`` of OpenSSH 9.2 prints the same)."""

_MULTI = {"listenaddress", "port", "hostkey", "acceptenv", "subsystem", "hostcertificate", "include"}
_SPACE_JOINED = {"permitopen", "permitlisten"}  # one keyword, several space-separated values
_MAX_INCLUDES = 64
_SPEC_KEYS = {"user": "user", "host": "host", "address": "addr", "localaddress": "laddr", "localport": "lport"}
_SPEC_KEYS["rdomain"] = "rdomain"


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


@dataclass
class MatchBlock:
    """One ``Match`` block: its criteria as written and its lines."""

    criteria: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The criteria normalised for comparison (keywords are case-insensitive, values are not)."""
        words = self.criteria.split()
        return " ".join(w.lower() if i % 2 == 0 else w for i, w in enumerate(words))

    @property
    def matches_all(self) -> bool:
        """True for ``Match all``."""
        return self.key == "all"


@dataclass
class SshdConfig:
    """A parsed sshd configuration: global lines and Match blocks, in file order, Includes expanded."""

    global_lines: list[tuple[str, str]] = field(default_factory=list)
    blocks: list[MatchBlock] = field(default_factory=list)

    def global_settings(self) -> dict[str, str]:
        """The global settings, first value wins (multi-valued keywords joined by spaces)."""
        return _first_wins(self.global_lines)

    def default_settings(self) -> dict[str, str]:
        """Settings for a connection only ``Match all`` blocks match (what ``sshd -T`` without ``-C`` prints)."""
        overriding = _first_wins([line for b in self.blocks if b.matches_all for line in b.lines])
        return {**self.global_settings(), **overriding}

    def context_settings(self, index: int) -> dict[str, str]:
        """Settings for a connection that matches block ``index`` (see the module docstring)."""
        target = self.blocks[index]
        chosen = [b for i, b in enumerate(self.blocks) if i == index or b.matches_all or b.key == target.key]
        overriding = _first_wins([line for b in chosen for line in b.lines])
        return {**self.global_settings(), **overriding}


def _first_wins(lines: list[tuple[str, str]]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for key, value in lines:
        if key not in settings:
            settings[key] = value
        elif key in _MULTI:
            settings[key] = f"{settings[key]} {value}"
    return settings


def _split_line(line: str) -> tuple[str, str]:
    head = line.split(None, 1)[0]
    if "=" in head:  # Keyword=value
        key, _, rest = line.partition("=")
        return key.strip().lower(), rest.strip()
    parts = line.split(None, 1)
    return parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""


def parse_sshd_config_blocks(root: Path, path: Path, trace: Trace) -> SshdConfig:
    """Parse ``path`` and its Includes into global lines and Match blocks."""
    config = SshdConfig()
    budget = [_MAX_INCLUDES]

    def visit(p: Path, block: MatchBlock | None) -> None:
        text = trace.read_text(p)
        if text is None:
            return
        current = block
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, value = _split_line(line)
            if key == "match":
                current = MatchBlock(criteria=value)
                config.blocks.append(current)
                continue
            if key == "include":
                for pattern in shlex.split(value):
                    base = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                    host = under_root(root, base)
                    for inc in sorted(host.parent.glob(host.name)):
                        if budget[0] <= 0:
                            return
                        budget[0] -= 1
                        visit(inc, current)  # a Match inside the included file ends with that file
                continue
            (current.lines if current is not None else config.global_lines).append((key, value))

    visit(path, None)
    return config


def parse_sshd_config(root: Path, path: Path, trace: Trace) -> tuple[dict[str, str], list[str], list[int], int]:
    """Parse ``path`` and its Includes; returns global settings, listen addresses, ports and the Match block count."""
    config = parse_sshd_config_blocks(root, path, trace)
    listen = [v for k, v in config.global_lines if k == "listenaddress"]
    ports = [int(v) for k, v in config.global_lines if k == "port" and v.isdigit()]
    return config.global_settings(), listen, ports, len(config.blocks)


def connection_spec(criteria: str) -> str | None:
    """The ``sshd -T -C`` spec for a Match block's criteria, or None when it names no single concrete connection."""
    words = criteria.split()
    if len(words) < 2 or len(words) % 2:
        return None
    parts = []
    for keyword, value in zip(words[::2], words[1::2], strict=True):
        spec_key = _SPEC_KEYS.get(keyword.lower())
        if spec_key is None or any(c in value for c in "*?!,/"):
            return None
        parts.append(f"{spec_key}={value}")
    return ",".join(parts)


def forwarding(context: str, method: str, settings: dict[str, str]) -> SshForwarding:
    """What a connection with ``settings`` may forward: the decision every forwarding rule reads."""
    eff = {k: settings.get(k, d).lower() for k, d in FORWARDING_DEFAULTS.items()}
    disabled = eff["disableforwarding"] == "yes"
    tcp = not disabled and eff["allowtcpforwarding"] != "no"
    tcp = tcp and not (eff["permitopen"] == "none" and eff["permitlisten"] == "none")
    return SshForwarding(
        context=context,
        method=method,
        settings=eff,
        tcp_forwarding=tcp,
        streamlocal_forwarding=not disabled and eff["allowstreamlocalforwarding"] != "no",
        tunnel=eff["permittunnel"] != "no",
        gateway_ports=tcp and eff["gatewayports"] != "no",
    )


def collect_ssh(store: RawStore, root: Path, *, config: Path | None = None) -> SshFacts:
    """Collect sshd's authentication and forwarding settings on the host under ``root``.

    ``config``: the sshd_config to read (default ``{root}/etc/ssh/sshd_config``); on the real root ``sshd -T`` is
    given ``-f config`` when it is not the default.
    """
    trace = Trace(store)
    default_config = root / "etc" / "ssh" / "sshd_config"
    config = config or default_config
    live = root == Path("/") and shutil.which("sshd") is not None
    has_binary = (root / "usr" / "sbin" / "sshd").exists() or live
    if not config.exists() and not has_binary:
        trace.read(config)
        return SshFacts(status="ok", reason="sshd is not installed", sources=trace.sources, present=False)
    problems = []
    if not config.exists():
        trace.read(config)
        return SshFacts(
            status="unknown", reason=f"sshd is installed but {config} is missing", sources=trace.sources, present=True
        )
    parsed = parse_sshd_config_blocks(root, config, trace)
    if live:
        base = ["sshd", "-T"] + ([] if config == default_config else ["-f", str(config)])
        out = trace.run(base)
        if out.ok:
            settings, listen, ports = parse_sshd_t(out.text)
            contexts = [forwarding("global", "sshd -T", settings)]
            for i, block in enumerate(parsed.blocks):
                spec = connection_spec(block.criteria)
                ctx = f"Match {block.criteria}"
                result = trace.run([*base, "-C", spec]) if spec else None
                if result is not None and result.ok:
                    contexts.append(forwarding(ctx, "sshd -T -C", parse_sshd_t(result.text)[0]))
                else:
                    contexts.append(forwarding(ctx, "sshd_config", {**settings, **_block_overrides(parsed, i)}))
            return _facts(trace, "sshd -T", settings, listen, ports, len(parsed.blocks), contexts, defaults=False)
        problems.append(f"sshd -T failed ({out.error}); parsed {config} instead")
    settings = parsed.default_settings()
    listen = [v for k, v in parsed.global_lines if k == "listenaddress"]
    ports = [int(v) for k, v in parsed.global_lines if k == "port" and v.isdigit()]
    matches = len(parsed.blocks)
    contexts = [forwarding("global", "sshd_config", settings)]
    contexts += [
        forwarding(f"Match {b.criteria}", "sshd_config", parsed.context_settings(i))
        for i, b in enumerate(parsed.blocks)
    ]
    facts = _facts(trace, "sshd_config", settings, listen, ports, matches, contexts, defaults=True)
    return facts.model_copy(update={"reason": "; ".join(problems) or None})


def _block_overrides(parsed: SshdConfig, index: int) -> dict[str, str]:
    """The values block ``index`` (and the blocks assumed to match with it) set, over whatever sshd -T said."""
    full = parsed.context_settings(index)
    glob = parsed.default_settings()
    return {k: v for k, v in full.items() if glob.get(k) != v or k not in glob}


def _facts(
    trace: Trace,
    method: str,
    settings: dict[str, str],
    listen: list[str],
    ports: list[int],
    matches: int,
    contexts: list[SshForwarding],
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
        forwarding=contexts,
    )
