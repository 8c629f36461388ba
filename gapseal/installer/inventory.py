"""The inventory: Ansible's YAML inventory format, checked before a single host is contacted.

gapseal reads the same file ``ansible-playbook -i`` would (groups with ``hosts``, ``vars`` and ``children``), so the
playbooks stay usable without gapseal. On top of Ansible's own rules it checks the variables the roles read:
``gapseal_root`` (an absolute path), ``egress_lockdown`` (a boolean) and ``egress_allow`` (a list of CIDRs), and
refuses unknown keys in a group, so a typo (``host:`` for ``hosts:``) is an error instead of an empty run.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gapseal.errors import InstallError

GROUP_KEYS = frozenset({"hosts", "vars", "children"})
MAX_INVENTORY_BYTES = 4 * 1024 * 1024


class InventoryError(InstallError):
    """An inventory that cannot be read or that sets a gapseal variable wrongly."""


@dataclass(frozen=True)
class InventoryHost:
    """One host with its variables merged the way Ansible merges them (parent group, child group, host)."""

    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()

    @property
    def gapseal_root(self) -> str:
        """The install prefix on this host (``/`` unless the inventory says otherwise)."""
        return str(self.vars.get("gapseal_root", "/"))

    @property
    def egress_lockdown(self) -> bool:
        """Whether the egress role closes outbound traffic on this host."""
        return bool(self.vars.get("egress_lockdown", True))

    @property
    def address(self) -> str:
        """What Ansible connects to (``ansible_host``, else the name)."""
        return str(self.vars.get("ansible_host", self.name))


@dataclass(frozen=True)
class Inventory:
    """A parsed, checked inventory."""

    path: Path
    hosts: Mapping[str, InventoryHost]

    def names(self) -> list[str]:
        """Host names in the order the inventory lists them."""
        return list(self.hosts)

    def groups(self) -> list[str]:
        """Every group name, ``all`` included, sorted."""
        return sorted({"all", *(g for h in self.hosts.values() for g in h.groups)})

    def match(self, pattern: str) -> list[str]:
        """Return the hosts an Ansible ``--limit`` pattern selects, in inventory order.

        Covers what operators type: names and groups, ``*``/``?`` wildcards, ``~regex``, lists joined by ``,`` or
        ``:``, ``!`` to exclude and ``&`` to intersect. An invalid regex is an ``InventoryError``.
        """
        selected: set[str] | None = None
        excluded: set[str] = set()
        intersect: list[set[str]] = []
        for raw in re.split(r"[,:]", pattern):
            term = raw.strip()
            if not term:
                continue
            op, term = (term[0], term[1:]) if term[0] in "!&" else ("", term)
            hits = self._term(term)
            if op == "!":
                excluded |= hits
            elif op == "&":
                intersect.append(hits)
            else:
                selected = (selected or set()) | hits
        chosen = set(self.hosts) if selected is None else selected
        for hits in intersect:
            chosen &= hits
        chosen -= excluded
        return [n for n in self.names() if n in chosen]

    def _term(self, term: str) -> set[str]:
        if term.startswith("~"):
            try:
                rx = re.compile(term[1:])
            except re.error as e:
                raise InventoryError(f"--limit: {term!r} is not a valid regular expression ({e})") from e
            return {n for n, h in self.hosts.items() if rx.search(n) or any(rx.search(g) for g in h.groups)}
        if term == "all" or term == "*":
            return set(self.hosts)
        return {
            n
            for n, h in self.hosts.items()
            if fnmatch.fnmatchcase(n, term) or any(fnmatch.fnmatchcase(g, term) for g in h.groups)
        }


def _check_vars(where: str, values: Any) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InventoryError(f"{where}: vars must be a mapping, got {type(values).__name__}")
    root = values.get("gapseal_root")
    if root is not None and (not isinstance(root, str) or not posixpath.isabs(root)):
        raise InventoryError(
            f"{where}: gapseal_root must be an absolute path, got {root!r}", hint="e.g. gapseal_root: /srv/gapseal"
        )
    lockdown = values.get("egress_lockdown")
    if lockdown is not None and not isinstance(lockdown, bool):
        raise InventoryError(f"{where}: egress_lockdown must be true or false, got {lockdown!r}")
    allow = values.get("egress_allow")
    if allow is not None:
        if not isinstance(allow, list):
            raise InventoryError(f"{where}: egress_allow must be a list of CIDRs, got {allow!r}")
        for item in allow:
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError as e:
                raise InventoryError(f"{where}: egress_allow: {item!r} is not an IP network ({e})") from e
    return dict(values)


def _walk(
    group: str,
    body: Any,
    inherited: dict[str, Any],
    chain: tuple[str, ...],
    out: dict[str, InventoryHost],
    where: str,
) -> None:
    if group in chain:
        raise InventoryError(f"{where}: group {group!r} is its own ancestor ({' > '.join((*chain, group))})")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InventoryError(f"{where}: group {group!r} must be a mapping, got {type(body).__name__}")
    unknown = set(body) - GROUP_KEYS
    if unknown:
        raise InventoryError(
            f"{where}: group {group!r} has unknown key(s) {', '.join(sorted(map(str, unknown)))}",
            hint="a group holds only hosts, vars and children",
        )
    merged = {**inherited, **_check_vars(f"{where}: group {group!r}", body.get("vars"))}
    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise InventoryError(f"{where}: group {group!r}: hosts must be a mapping of name to vars")
    for name, hvars in hosts.items():
        if not isinstance(name, str) or not name:
            raise InventoryError(f"{where}: group {group!r}: host name {name!r} is not a string")
        own = _check_vars(f"{where}: host {name!r}", hvars)
        previous = out.get(name)
        base = dict(previous.vars) if previous else {}
        out[name] = InventoryHost(
            name=name,
            vars={**base, **merged, **own},
            groups=(*(previous.groups if previous else ()), *chain[1:], group),
        )
    children = body.get("children") or {}
    if not isinstance(children, dict):
        raise InventoryError(f"{where}: group {group!r}: children must be a mapping of group names")
    for child, child_body in children.items():
        _walk(str(child), child_body, merged, (*chain, group), out, where)


def parse_inventory(text: str, path: Path) -> Inventory:
    """Parse YAML inventory ``text`` (read from ``path``) and check it."""
    where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InventoryError(f"{where}: not valid YAML: {e}", where=where) from e
    if not isinstance(data, dict) or not data:
        raise InventoryError(
            f"{where}: an inventory is a YAML mapping of groups (e.g. all: {{hosts: ...}})",
            where=where,
            hint="gapseal reads Ansible's YAML inventory format",
        )
    hosts: dict[str, InventoryHost] = {}
    for group, body in data.items():
        _walk(str(group), body, {}, (), hosts, where)
    if not hosts:
        raise InventoryError(f"{where}: the inventory lists no hosts", where=where)
    return Inventory(path=path, hosts=hosts)


def load_inventory(path: Path) -> Inventory:
    """Read and check the YAML inventory at ``path``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise InventoryError(f"inventory {path} does not exist", where=str(path), hint="check the path") from e
    except OSError as e:
        raise InventoryError(f"{path}: cannot read the inventory: {e.strerror or e}", where=str(path)) from e
    if len(raw) > MAX_INVENTORY_BYTES:
        raise InventoryError(f"{path}: larger than {MAX_INVENTORY_BYTES} bytes; not an inventory", where=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InventoryError(f"{path}: not UTF-8 text", where=str(path)) from e
    return parse_inventory(text, path)
