"""Which raw evidence file backs a finding, and which command (or file read) produced it.

A finding points into its host's facts with JSON pointers (``/routes/default_routes/0``, ``/firewall/nftables``). The
first segment names a facts domain; the domain lists its ``sources``: the argv it ran or the path it read, with the
sha256 of the bytes. When those bytes were stored, the evidence directory holds them as ``raw/<host>/sha256-<hex>``
(``raw_path``). Sources that may hold secrets (process environments, unit files) are hashed but not stored: the link
then names the source and its digest and says why there is no file.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gapseal.audit.facts import HostFacts, Source

RAW_DIR = "raw"


def raw_path(host: str, sha256_hex: str) -> str:
    """Where the evidence directory keeps the raw bytes with digest ``sha256_hex`` collected on ``host``."""
    return f"{RAW_DIR}/{host}/sha256-{sha256_hex}"


@dataclass(frozen=True)
class SourceLink:
    """One source behind a finding."""

    domain: str
    """The facts domain the pointer leads into, e.g. ``routes``."""
    command: str
    """What produced the bytes: the shell-quoted argv, ``read PATH``, ``list PATH`` or ``socket call``."""
    raw_file: str | None
    """Relative path of the raw file in the evidence directory (None when the bytes were not stored)."""
    sha256: str | None
    """Lower-case hex sha256 of the bytes read (None when nothing was read)."""
    note: str | None
    """Why there is no raw file: not stored (may hold secrets), or the read failed."""


def describe_source(source: Source) -> str:
    """The command or read that produced a source's bytes, as a reader would type or say it."""
    if source.kind == "command" and source.argv:
        return shlex.join(source.argv)
    if source.kind in ("file", "procfs"):
        return f"read {source.path}"
    if source.kind == "directory":
        return f"list {source.path}"
    return "socket call (no bytes read)"


def _domain_of(pointer: str) -> str | None:
    parts = pointer.split("/")
    return parts[1].replace("~1", "/").replace("~0", "~") if len(parts) > 1 and parts[1] else None


def _resolve(document: Any, pointer: str) -> Any:
    """The value at JSON pointer ``pointer`` in ``document`` (None when it leads nowhere)."""
    value = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict):
            value = value.get(token)
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return None
    return value


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {s for v in value.values() for s in _strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in _strings(v)}
    return set()


def _names(source: Source, mentioned: set[str]) -> bool:
    """Whether the fact at the pointer names this source: its command, or its file (a location may end in ':KEY')."""
    if source.argv and shlex.join(source.argv) in mentioned:
        return True
    if not source.path:
        return False
    for m in mentioned:
        where = m.split(":")[0]
        if where and (source.path == where or source.path.endswith("/" + where.lstrip("/"))):
            return True
    return False


def source_links(host: str, facts: HostFacts, pointers: Iterable[str]) -> tuple[SourceLink, ...]:
    """The sources behind ``pointers``, in pointer order, each once.

    When the fact a pointer leads to names its own source (a ``location``, ``origin`` or ``method`` that is one of
    its domain's files or commands), only those sources are linked; otherwise every source of the domain is.
    """
    links: dict[tuple[str, str, str | None], SourceLink] = {}
    document = None
    for pointer in pointers:
        domain = _domain_of(pointer)
        if domain is None or domain not in type(facts).model_fields:
            continue
        sources: list[Source] = getattr(getattr(facts, domain), "sources", None) or []
        if document is None:
            document = facts.model_dump(mode="json", exclude={"raw_outputs"})
        mentioned = _strings(_resolve(document, pointer))
        named = [s for s in sources if _names(s, mentioned)]
        for s in named or sources:
            stored = s.stored and s.sha256 is not None and f"sha256:{s.sha256}" in facts.raw_outputs
            note = None
            if not stored:
                if s.error:
                    note = f"not read: {s.error}"
                elif s.sha256 is None:
                    note = "nothing was read"
                else:
                    note = "hashed, not stored (the source may hold secrets)"
            link = SourceLink(
                domain=domain,
                command=describe_source(s),
                raw_file=raw_path(host, s.sha256) if stored and s.sha256 else None,
                sha256=s.sha256,
                note=note,
            )
            links.setdefault((link.domain, link.command, link.sha256), link)
    return tuple(links.values())
