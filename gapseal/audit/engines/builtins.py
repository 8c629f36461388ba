"""Builtin checking: find every function a Rego module calls and refuse builtins an engine does not implement.

regopy returns *undefined* for a call to a builtin it lacks (``net.cidr_contains``, ``rego.metadata.rule``,
``print``...), and an undefined condition silently passes a ``deny`` rule. So before any evaluation the engine layer
scans every module, resolves each call to a function the policy set defines or to a builtin, and raises
``AuditError`` naming the builtin, file and line for one the engine does not implement.

A builtin must also be on ``PORTABLE_BUILTINS``: the builtins gapseal's policies may use because regopy and OPA give
the same answers for them on the inputs the policies feed them (the differential test checks every fixture through
both). Known divergences kept off the list: ``format_int`` (regopy prints base 2 wrongly), ``time.parse_rfc3339_ns``
(undefined in regopy), ``to_number`` (regopy accepts ``"0x10"``, ``" 1"``; OPA errors), ``sprintf`` with ``%q``
(regopy leaves it verbatim), ``net.cidr_*`` and ``rego.metadata.*`` (absent from regopy).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gapseal.audit.engines.policyset import Module
from gapseal.errors import AuditError

#: Builtins the policies may call: implemented alike by regopy (rego-cpp) and OPA for the way policies use them.
PORTABLE_BUILTINS: frozenset[str] = frozenset(
    {
        # comparison, arithmetic and sets are operators, reported by the scanner only when written as calls
        "count",
        "sum",
        "max",
        "min",
        "sort",
        "abs",
        "floor",
        "ceil",
        "round",
        "concat",
        "contains",
        "startswith",
        "endswith",
        "lower",
        "upper",
        "split",
        "substring",
        "indexof",
        "replace",
        "trim",
        "trim_space",
        "trim_prefix",
        "trim_suffix",
        "sprintf",
        "regex.match",
        "glob.match",
        "object.get",
        "object.keys",
        "object.union",
        "array.concat",
        "array.slice",
        "union",
        "intersection",
        "is_string",
        "is_number",
        "is_boolean",
        "is_array",
        "is_object",
        "is_set",
        "is_null",
        "type_name",
        "numbers.range",
        "json.marshal",
        "graph.reachable",
        "object.remove",
    }
)

_KEYWORDS = frozenset({"if", "not", "some", "every", "in", "contains", "else", "with", "as", "default", "import"})
_CALL_RE = re.compile(r"(?<![\w.\]\)])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_IMPORT_RE = re.compile(r"^import\s+(data\.[\w.]+)(?:\s+as\s+(\w+))?\s*$", re.MULTILINE)
_HEAD_RE = re.compile(r"^([A-Za-z_]\w*)\s*\(", re.MULTILINE)


@dataclass(frozen=True)
class Call:
    """A function call found in a module."""

    name: str
    """The called name as written (``lib.violation``, ``sprintf``)."""
    file: str
    line: int
    builtin: bool
    """True when the name resolves to a builtin, False for a function the policy set defines."""


def blank_strings_and_comments(source: str) -> str:
    """Return ``source`` with string literals and comments replaced by spaces (newlines kept, so lines still match)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "#":
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", source[i:j]))
            i = j
        elif c == "`":
            j = source.find("`", i + 1)
            j = n if j < 0 else j + 1
            out.append(re.sub(r"[^\n]", " ", source[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def defined_functions(modules: Iterable[Module]) -> dict[str, set[str]]:
    """Map each package to the function (and rule) names its modules define at top level."""
    out: dict[str, set[str]] = {}
    for module in modules:
        code = blank_strings_and_comments(module.source)
        out.setdefault(module.package, set()).update(m.group(1) for m in _HEAD_RE.finditer(code))
    return out


def find_calls(module: Module, functions: dict[str, set[str]]) -> list[Call]:
    """Every call in ``module``, each resolved to a policy-set function or a builtin."""
    code = blank_strings_and_comments(module.source)
    aliases: dict[str, str] = {}
    for match in _IMPORT_RE.finditer(code):
        path = match.group(1)[len("data.") :]
        aliases[match.group(2) or path.rsplit(".", 1)[-1]] = path
    own = functions.get(module.package, set())
    calls: list[Call] = []
    for match in _CALL_RE.finditer(code):
        name = match.group(1)
        if name in _KEYWORDS:
            continue
        line = code.count("\n", 0, match.start()) + 1
        line_start = code.rfind("\n", 0, match.start()) + 1
        if match.start() == line_start and name in own:
            continue  # a function head (definition), not a call
        head, _, rest = name.partition(".")
        if name in own:
            calls.append(Call(name, module.path, line, builtin=False))
        elif head in aliases or head == "data":
            package, _, function = (aliases.get(head, "") + "." + rest if head in aliases else rest).rpartition(".")
            package = package.strip(".")
            if function not in functions.get(package, set()):
                raise AuditError(
                    f"call to undefined function {name} (no {function!r} in package {package or '?'})",
                    where=f"{module.path}:{line}",
                )
            calls.append(Call(name, module.path, line, builtin=False))
        else:
            calls.append(Call(name, module.path, line, builtin=True))
    return calls


def check_builtins(modules: Iterable[Module], supported: Callable[[str], bool], engine: str) -> list[Call]:
    """Raise ``AuditError`` for the first call to a builtin that ``engine`` lacks or that is not portable.

    Returns every call found, so callers can report what was checked.
    """
    modules = list(modules)
    functions = defined_functions(modules)
    calls = [c for m in modules for c in find_calls(m, functions)]
    for call in calls:
        if not call.builtin:
            continue
        if not supported(call.name):
            raise AuditError(
                f"builtin {call.name} is not implemented by the {engine} engine: it would evaluate to undefined "
                "and could make a rule pass silently",
                where=f"{call.file}:{call.line}",
                hint="rewrite the policy with builtins both engines implement (see gapseal/audit/engines/builtins.py)",
            )
        if call.name not in PORTABLE_BUILTINS:
            raise AuditError(
                f"builtin {call.name} is not on gapseal's portable list (builtins regopy and OPA evaluate alike)",
                where=f"{call.file}:{call.line}",
                hint="use a portable builtin, or add it to PORTABLE_BUILTINS with a differential test proving parity",
            )
    return calls
