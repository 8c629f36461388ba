"""The policy set: every Rego module, the data document and the rules' metadata, loaded once and checked.

Layout (``policies/``)::

    gapseal/<domain>/<topic>.rego        package gapseal.<domain>; ``deny contains violation if {...}`` rules
    gapseal/<domain>/<topic>_test.rego   package gapseal.<domain>_test; ``test_success_*`` / ``test_fail_*``
    gapseal/lib/*.rego                   package gapseal.lib: helpers (violation objects, enclave containment)
    data/<name>.yaml                     data.<name> (``allowlist``: enclave networks, resolvers, log hosts...)
    controls.yaml                        the controls catalog

Every ``deny`` rule carries a ``# METADATA`` block (OPA annotation syntax) with ``title``, ``description`` and
``custom: {id, severity, remediation, controls}``. regopy does not implement ``rego.metadata.rule()``, so the loader
parses the blocks here and puts them in the data document as ``data.gapseal_rules[<id>]``; ``lib.violation`` merges
them into each violation object. Both engines therefore see the same metadata, and a rule's metadata has one source.

CIDR containment: regopy lacks ``net.cidr_*``. Networks in the facts carry ``first``/``last`` as fixed-width hex
strings (``gapseal.audit.facts``); the loader derives the same form for the allowlist's enclave networks
(``data.allowlist.enclave_networks``), so containment in Rego is two string comparisons (see ``lib/net.rego``).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gapseal.audit.controls import CATALOG_FILE, ControlsCatalog, load_catalog
from gapseal.errors import AuditError
from gapseal.resources import policies_dir

SEVERITIES = ("critical", "high", "medium", "low", "info")
RULE_ID_RE = re.compile(r"^[A-Z]+-[0-9]{3}$")
METADATA_DATA_KEY = "gapseal_rules"

_PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
_TEST_RE = re.compile(r"^(test_[A-Za-z0-9_]+)\s+if\b", re.MULTILINE)
_DENY_HEAD_RE = re.compile(r"^deny\s+contains\b")
_CLAUSE_RE = re.compile(r'lib\.(violation|undetermined|unknown)\(\s*"([A-Z]+-[0-9]{3})"')


@dataclass(frozen=True)
class Module:
    """One Rego file of the policy set."""

    path: str
    """Path relative to the policies directory (posix), used as the module name."""
    source: str
    package: str
    is_test: bool


@dataclass(frozen=True)
class RuleMeta:
    """The METADATA of one ``deny`` rule."""

    id: str
    package: str
    title: str
    description: str
    severity: str
    remediation: str
    controls: tuple[str, ...]
    file: str
    line: int

    def as_data(self) -> dict[str, Any]:
        """The fields merged into every violation of the rule (``data.gapseal_rules[id]``)."""
        return {
            "rule": self.id,
            "package": self.package,
            "title": self.title,
            "description": self.description,
            "severity": self.severity,
            "remediation": self.remediation,
            "controls": list(self.controls),
        }


@dataclass(frozen=True)
class RegoTest:
    """One ``test_*`` rule of a ``*_test.rego`` module."""

    package: str
    name: str
    file: str
    line: int
    input_rule: str | None = None
    """``input_<name without test_>`` when the module defines it: the runner evaluates it and runs the test with
    that document as input (regopy cannot run ``with input as ...``; see lib/fixtures_test.rego)."""


@dataclass(frozen=True)
class PolicySet:
    """Modules, data and rule metadata, ready to load into an engine."""

    root: Path
    modules: tuple[Module, ...]
    data: Mapping[str, Any]
    rules: tuple[RuleMeta, ...]
    catalog: ControlsCatalog
    digest: str
    """sha256 over every file that shapes the results (modules, data files, catalog) and any data override."""
    tests: tuple[RegoTest, ...] = field(default=())

    @property
    def policy_modules(self) -> tuple[Module, ...]:
        """The non-test modules."""
        return tuple(m for m in self.modules if not m.is_test)

    @property
    def rule_packages(self) -> tuple[str, ...]:
        """Packages that hold ``deny`` rules, sorted."""
        return tuple(sorted({r.package for r in self.rules}))

    def rule(self, rule_id: str) -> RuleMeta:
        """Return the metadata of ``rule_id``; raise ``KeyError`` if no rule has it."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def load_policy_set(root: Path | None = None, *, data_override: Mapping[str, Any] | None = None) -> PolicySet:
    """Load and check the policy set under ``root`` (default: the shipped ``policies/``).

    ``data_override`` is deep-merged over the data files (a site's allowlist). Raises ``AuditError`` naming the file
    and line of anything malformed: a missing METADATA field, an unknown control id, a duplicate rule id.
    """
    root = root or policies_dir()
    if not (root / "gapseal").is_dir():
        raise AuditError("no policies found", where=str(root / "gapseal"), hint="point --policies at a policies/ tree")
    catalog = load_catalog(root / CATALOG_FILE)
    hasher = hashlib.sha256()
    modules: list[Module] = []
    for path in sorted((root / "gapseal").rglob("*.rego")):
        rel = path.relative_to(root).as_posix()
        raw = _read(path)
        _hash_file(hasher, rel, raw)
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AuditError(f"policy is not UTF-8: {e}", where=rel) from e
        match = _PACKAGE_RE.search(source)
        if not match:
            raise AuditError("policy has no package declaration", where=rel)
        is_test = path.name.endswith("_test.rego")
        modules.append(Module(path=rel, source=source, package=match.group(1), is_test=is_test))
    _hash_file(hasher, CATALOG_FILE, _read(root / CATALOG_FILE))

    data: dict[str, Any] = {}
    data_dir = root / "data"
    if data_dir.is_dir():
        for path in sorted(p for p in data_dir.iterdir() if p.suffix in (".yaml", ".yml", ".json")):
            rel = path.relative_to(root).as_posix()
            raw = _read(path)
            _hash_file(hasher, rel, raw)
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise AuditError(f"data file is not valid YAML/JSON: {e}", where=rel) from e
            if not isinstance(value, dict):
                raise AuditError("data file must hold a mapping", where=rel)
            data[path.stem] = value
    if data_override:
        hasher.update(b"override\0" + json.dumps(data_override, sort_keys=True).encode() + b"\0")
        data = deep_merge(data, data_override)

    rules = tuple(r for m in modules if not m.is_test for r in parse_metadata(m, catalog))
    seen: dict[str, RuleMeta] = {}
    for r in rules:
        if r.id in seen:
            first = seen[r.id]
            raise AuditError(
                f"rule id {r.id} is used twice (first at {first.file}:{first.line})", where=f"{r.file}:{r.line}"
            )
        seen[r.id] = r
    if METADATA_DATA_KEY in data:
        raise AuditError(f"data key {METADATA_DATA_KEY!r} is reserved for rule metadata", where=str(data_dir))
    data = derive_allowlist(data)
    data[METADATA_DATA_KEY] = {r.id: r.as_data() for r in rules}
    tests = tuple(t for m in modules if m.is_test for t in find_tests(m))
    return PolicySet(
        root=root,
        modules=tuple(modules),
        data=data,
        rules=rules,
        catalog=catalog,
        digest="sha256:" + hasher.hexdigest(),
        tests=tests,
    )


def parse_metadata(module: Module, catalog: ControlsCatalog) -> list[RuleMeta]:
    """Parse every ``# METADATA`` block of ``module`` and check that each ``deny`` rule has a complete one."""
    lines = module.source.splitlines()
    rules: list[RuleMeta] = []
    annotated_heads: set[int] = set()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "# METADATA":
            i += 1
            continue
        start = i + 1  # 1-based line number of the "# METADATA" line
        block: list[str] = []
        i += 1
        while i < len(lines) and lines[i].lstrip().startswith("#"):
            text = lines[i].lstrip()[1:]
            block.append(text[1:] if text.startswith(" ") else text)
            i += 1
        head_line = i + 1
        if i >= len(lines) or not lines[i].strip():
            raise AuditError("METADATA block is not directly followed by a rule", where=f"{module.path}:{start}")
        where = f"{module.path}:{start}"
        try:
            meta = yaml.safe_load("\n".join(block))
        except yaml.YAMLError as e:
            raise AuditError(f"METADATA is not valid YAML: {e}", where=where) from e
        if not isinstance(meta, dict):
            raise AuditError("METADATA must be a YAML mapping", where=where)
        if meta.get("scope") in ("package", "subpackages", "document"):
            continue
        if not _DENY_HEAD_RE.match(lines[i]):
            continue  # metadata on a helper rule: allowed, not a gapseal rule
        annotated_heads.add(i)
        rules.append(_rule_meta(meta, module, where, head_line, _rule_body(lines, i), catalog))
    # Every other deny rule is a further clause of a rule annotated in this file (it builds its violation with that
    # rule's id). Every annotated rule needs an "unknown clause", the body that reports the facts it reads as not
    # collected (lib.unknown("ID", ...)): a rule cannot pass on facts that were never gathered.
    ids = {r.id for r in rules}
    covered: set[str] = set()
    for n, line in enumerate(lines):
        if not _DENY_HEAD_RE.match(line) or n in annotated_heads:
            continue
        body = _rule_body(lines, n)
        match = _CLAUSE_RE.search(body)
        if not match or match.group(2) not in ids:
            raise AuditError(
                "deny rule has no METADATA block (title, description, custom.id/severity/remediation/controls) "
                "and is not a further clause (lib.violation/undetermined/unknown) of a rule annotated in this file",
                where=f"{module.path}:{n + 1}",
            )
        if match.group(1) == "unknown":
            covered.add(match.group(2))
    for r in rules:
        if r.id not in covered:
            raise AuditError(
                f"rule {r.id} has no unknown clause: add a deny body reporting lib.unknown({r.id!r}, ...) when the "
                "facts it reads have status unknown",
                where=f"{r.file}:{r.line}",
            )
    return rules


def _rule_meta(
    meta: dict[str, Any], module: Module, where: str, head_line: int, body: str, catalog: ControlsCatalog
) -> RuleMeta:
    custom = meta.get("custom")
    if not isinstance(custom, dict):
        raise AuditError("METADATA lacks a 'custom' mapping (id, severity, remediation, controls)", where=where)
    for key, holder in (("title", meta), ("description", meta), ("id", custom), ("severity", custom)):
        if not isinstance(holder.get(key), str) or not holder[key].strip():
            raise AuditError(f"METADATA lacks {key!r} (a non-empty string)", where=where)
    if not isinstance(custom.get("remediation"), str) or not custom["remediation"].strip():
        raise AuditError("METADATA lacks 'custom.remediation' (a non-empty string)", where=where)
    rule_id = custom["id"]
    if not RULE_ID_RE.match(rule_id):
        raise AuditError(f"rule id {rule_id!r} does not look like 'EGRESS-001'", where=where)
    if custom["severity"] not in SEVERITIES:
        raise AuditError(f"severity {custom['severity']!r} is not one of {', '.join(SEVERITIES)}", where=where)
    controls = custom.get("controls")
    if not isinstance(controls, list) or not controls or not all(isinstance(c, str) for c in controls):
        raise AuditError("METADATA lacks 'custom.controls' (a non-empty list of control ids)", where=where)
    unknown = [c for c in controls if c not in catalog.ids()]
    if unknown:
        raise AuditError(
            f"unknown control id(s) {', '.join(unknown)} in rule {rule_id}",
            where=where,
            hint="add the control to policies/controls.yaml, naming it exactly as its source does",
        )
    if f'"{rule_id}"' not in body:
        raise AuditError(
            f"rule body does not build its violation with its own id {rule_id!r}", where=f"{module.path}:{head_line}"
        )
    return RuleMeta(
        id=rule_id,
        package=module.package,
        title=meta["title"].strip(),
        description=" ".join(meta["description"].split()),
        severity=custom["severity"],
        remediation=" ".join(custom["remediation"].split()),
        controls=tuple(controls),
        file=module.path,
        line=head_line,
    )


def _rule_body(lines: list[str], head: int) -> str:
    """The text of the rule starting at ``head`` up to the next top-level line that starts another rule."""
    end = head + 1
    while end < len(lines) and not (lines[end][:1].strip() and lines[end][:1] not in ("}", "#")):
        end += 1
    return "\n".join(lines[head:end])


def find_tests(module: Module) -> list[RegoTest]:
    """Every ``test_*`` rule of a test module, in file order (each name once)."""
    seen: set[str] = set()
    out: list[RegoTest] = []
    for match in _TEST_RE.finditer(module.source):
        name = match.group(1)
        if name in seen:
            continue
        seen.add(name)
        line = module.source.count("\n", 0, match.start()) + 1
        input_rule = "input_" + name[len("test_") :]
        has_input = re.search(rf"^{input_rule}\s*:=", module.source, re.MULTILINE) is not None
        out.append(
            RegoTest(
                package=module.package,
                name=name,
                file=module.path,
                line=line,
                input_rule=input_rule if has_input else None,
            )
        )
    return out


def derive_allowlist(data: dict[str, Any]) -> dict[str, Any]:
    """Add ``enclave_networks`` (and log hosts as /32, /128) in the facts' network form to ``data.allowlist``.

    Each entry is ``{cidr, family, prefixlen, first, last}`` with ``first``/``last`` as fixed-width lower-case hex,
    exactly as ``gapseal.audit.facts.Network`` writes them, so containment in Rego is a string comparison.
    """
    data = copy.deepcopy(data)
    allow = data.setdefault("allowlist", {})
    if not isinstance(allow, dict):
        raise AuditError("data.allowlist must be a mapping", where="data/allowlist")
    networks = []
    for key in ("enclave", "log_hosts"):
        values = allow.get(key, [])
        if not isinstance(values, list):
            raise AuditError(f"data.allowlist.{key} must be a list", where=f"data/allowlist.{key}")
        for value in values:
            networks.append(_network(value, key))
    allow["enclave_networks"] = networks
    return data


def _network(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, str):
        raise AuditError(f"data.allowlist.{key} entry {value!r} is not a string", where=f"data/allowlist.{key}")
    try:
        net = ipaddress.ip_network(value, strict=True)  # a bare address is a /32 or /128
    except ValueError as e:
        raise AuditError(f"data.allowlist.{key} entry {value!r} is not a network: {e}", where="data/allowlist") from e
    width = 8 if net.version == 4 else 32
    return {
        "cidr": str(net),
        "family": "inet" if net.version == 4 else "inet6",
        "prefixlen": net.prefixlen,
        "first": format(int(net.network_address), f"0{width}x"),
        "last": format(int(net.broadcast_address), f"0{width}x"),
    }


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise AuditError(f"cannot read policy file: {e.strerror}", where=str(path)) from e


def _hash_file(hasher: Any, rel: str, raw: bytes) -> None:
    hasher.update(rel.encode() + b"\0" + str(len(raw)).encode() + b"\0" + raw)
