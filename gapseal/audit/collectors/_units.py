"""systemd unit files under a root: ``ExecStart=`` and the environment each service gets.

Only what the auditor needs: the effective ``Environment=`` / ``EnvironmentFile=`` of every ``*.service`` (drop-ins
applied in systemd's order: top-level ``service.d/``, prefix ``foo-.service.d/``, template ``foo@.service.d/``, the
unit's own ``.d/``) and its ``ExecStart=``. The caller decides which units matter and records those as sources.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gapseal.audit.collectors._common import MAX_FILE_BYTES, under_root

UNIT_DIRS = (
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
)
"""Unit search path, highest priority first (systemd.unit(5))."""


@dataclass
class Unit:
    """One service unit with its drop-ins merged."""

    name: str
    path: Path
    files: list[Path] = field(default_factory=list)
    """The unit file and every drop-in / environment file read, in order."""
    exec_start: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    env_origin: dict[str, str] = field(default_factory=dict)
    """Variable -> ``path:line`` where it was set."""


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            return f.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None


def parse_env_assignments(value: str) -> list[tuple[str, str]]:
    """Split an ``Environment=`` value into ``(name, value)`` pairs (quoted, space-separated)."""
    try:
        words = shlex.split(value, posix=True)
    except ValueError:
        words = value.split()
    out = []
    for w in words:
        if "=" in w:
            k, _, v = w.partition("=")
            out.append((k, v))
    return out


def parse_env_file(text: str) -> list[tuple[int, str, str]]:
    """Parse an environment file (``KEY=VALUE`` lines, optional ``export``, quotes) into ``(line, key, value)``."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("export "):
            line = line[7:].strip()
        if "=" not in line:
            continue
        k, _, v = line.partition("=")
        k = k.strip()
        if not k.replace("_", "").isalnum():
            continue
        v = v.strip()
        try:
            parts = shlex.split(v, posix=True, comments=True)
            v = parts[0] if len(parts) == 1 else " ".join(parts)
        except ValueError:
            v = v.strip("\"'")
        out.append((n, k, v))
    return out


def section_entries(text: str, section: str) -> Iterator[tuple[int, str, str]]:
    """Every ``key=value`` line in ``[section]`` of a systemd-style file, as ``(line number, key, value)``.

    Units, drop-ins and Quadlet files share the syntax; comments, blank lines and other sections are skipped.
    """
    current = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            continue
        if current != section or "=" not in line:
            continue
        key, _, value = line.partition("=")
        yield n, key.strip(), value.strip()


def _apply(unit: Unit, root: Path, path: Path, text: str) -> None:
    for n, key, value in section_entries(text, "Service"):
        if key == "ExecStart":
            if not value:
                unit.exec_start = []
                continue
            try:
                unit.exec_start = shlex.split(value.lstrip("@-:+!"))
            except ValueError:
                unit.exec_start = value.split()
        elif key == "Environment":
            if not value:
                unit.environment.clear()
                unit.env_origin.clear()
            for k, v in parse_env_assignments(value):
                unit.environment[k] = v
                unit.env_origin[k] = f"{path}:{n}"
        elif key == "EnvironmentFile" and value:
            env_path = under_root(root, value.lstrip("-"))
            env_text = _read(env_path)
            if env_text is None:
                continue
            unit.files.append(env_path)
            for ln, k, v in parse_env_file(env_text):
                unit.environment[k] = v
                unit.env_origin[k] = f"{env_path}:{ln}"


def dropin_dirs(name: str) -> list[str]:
    """Drop-in directories that apply to unit ``name``, least specific first (systemd.unit(5)).

    ``service.d/`` applies to every service; ``foo-.service.d/`` to ``foo-bar.service`` and ``foo-bar-baz.service``;
    ``foo@.service.d/`` to every instance of the template; then the unit's own ``foo-bar.service.d/``.
    """
    stem, _, suffix = name.rpartition(".")
    dirs = [f"{suffix}.d"]
    parts = stem.split("-")
    dirs += [f"{'-'.join(parts[:i])}-.{suffix}.d" for i in range(1, len(parts))]
    if "@" in stem and not stem.endswith("@"):
        dirs.append(f"{stem.split('@', 1)[0]}@.{suffix}.d")
    dirs.append(f"{name}.d")
    return dirs


def load_units(root: Path) -> list[Unit]:
    """Every ``*.service`` under ``root`` (first found on the search path wins), drop-ins applied."""
    seen: dict[str, Path] = {}
    for d in UNIT_DIRS:
        base = root / d
        if not base.is_dir():
            continue
        for p in sorted(base.glob("*.service")):
            if p.name not in seen and p.is_file():
                seen[p.name] = p
    units = []
    for name, path in sorted(seen.items()):
        text = _read(path)
        if text is None:
            continue
        unit = Unit(name=name, path=path, files=[path])
        _apply(unit, root, path, text)
        dropins: dict[str, Path] = {}
        for level in dropin_dirs(name):
            for d in reversed(UNIT_DIRS):
                dd = root / d / level
                if dd.is_dir():
                    for p in sorted(dd.glob("*.conf")):
                        dropins[p.name] = p  # same name in a higher-priority or more specific dir replaces
        for _, p in sorted(dropins.items()):
            t = _read(p)
            if t is not None:
                unit.files.append(p)
                _apply(unit, root, p, t)
        units.append(unit)
    return units
