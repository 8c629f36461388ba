"""The default engine: rego-cpp in-process through ``regopy``.

regopy evaluates an unknown builtin to *undefined* without a word, so ``PolicyEngine.load`` scans every call first
(``builtins.check_builtins`` against ``Interpreter.is_builtin``). Builtin errors are made strict
(``strict_built_in_errors``), so a builtin that fails at run time is an error, not an undefined condition.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from gapseal.audit.engines.interface import PolicyEngine, Undefined, rule_root
from gapseal.audit.engines.policyset import Module, find_tests
from gapseal.errors import AuditError

_PATH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class RegopyEngine(PolicyEngine):
    """rego-cpp via regopy, in this process."""

    kind = "regopy"

    def __init__(self) -> None:
        super().__init__()
        try:
            import regopy
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise AuditError("the regopy engine is not installed", hint="pip install regopy") from e
        self._regopy = regopy
        self._interpreter = self._new_interpreter()
        self._bundle: Any = None
        self._entrypoints: set[str] = set()

    def _new_interpreter(self) -> Any:
        interpreter = self._regopy.Interpreter()
        interpreter.strict_built_in_errors = True
        return interpreter

    @property
    def description(self) -> str:
        """``regopy <version>``."""
        return f"regopy {self._regopy.__version__}"

    def supports_builtin(self, name: str) -> bool:
        """Ask rego-cpp whether it implements ``name``."""
        return bool(self._interpreter.is_builtin(name))

    def _load(self, modules: Sequence[Module], data: Mapping[str, Any]) -> None:
        self._interpreter = self._new_interpreter()
        for module in modules:
            try:
                self._interpreter.add_module(module.path, module.source)
            except self._regopy.RegoError as e:
                raise AuditError(f"regopy rejected the policy: {_first_line(str(e))}", where=module.path) from e
        try:
            self._interpreter.add_data_json(json.dumps(dict(data)))
        except self._regopy.RegoError as e:
            raise AuditError(f"regopy rejected the policy data: {_first_line(str(e))}") from e
        # Compile once: a plain query recompiles every module (a quarter second each time); a bundle's entry
        # points (each rule package's document, each test) run without recompiling.
        packages = {m.package for m in modules}
        root = rule_root(sorted({m.package for m in modules if not m.is_test and m.package != "gapseal.lib"}))
        if root is not None:
            packages.add(root)
        entrypoints = sorted(
            {p.replace(".", "/") for p in packages}
            | {f"{m.package}.{t}".replace(".", "/") for m in modules for t in _test_names(m) if m.is_test}
        )
        try:
            self._bundle = self._interpreter.build(None, entrypoints)
        except self._regopy.RegoError as e:
            raise AuditError(f"regopy could not compile the policies: {_first_line(str(e))}") from e
        if not self._bundle.ok():
            raise AuditError("regopy could not compile the policies (bundle not ok)")
        self._entrypoints = set(entrypoints)

    def query_document(self, path: str, input_document: Mapping[str, Any] | None) -> Any:
        """Query ``data.<path>``; raise ``Undefined`` for an undefined document, ``AuditError`` for an error."""
        from regopy.rego_shared import (
            rego_bundle_query_entrypoint,
            rego_free_output,
            rego_output_ok,
            rego_output_string,
            rego_query,
        )

        if not _PATH_RE.match(path):
            raise AuditError(f"not a document path: {path!r}")
        if input_document is not None:
            # Set on every query: caching by object identity would be wrong once Python reuses a freed dict's id.
            try:
                self._interpreter.set_input(self._regopy.Input(input_document))
            except (self._regopy.RegoError, ValueError) as e:
                raise AuditError(f"regopy rejected the input document: {_first_line(str(e))}") from e
        entrypoint = path.replace(".", "/")
        try:
            if entrypoint in self._entrypoints:
                output = rego_bundle_query_entrypoint(self._interpreter._impl, self._bundle._impl, entrypoint)
            else:
                output = rego_query(self._interpreter._impl, f"data.{path}")
        except self._regopy.RegoError as e:
            raise AuditError(f"regopy failed to evaluate data.{path}: {_first_line(str(e))}") from e
        try:
            ok = rego_output_ok(output)
            text = rego_output_string(output)
        finally:
            rego_free_output(output)
        if not ok:
            raise AuditError(f"regopy failed to evaluate data.{path}: {_first_line(text)}")
        if text == "undefined":
            raise Undefined(path)
        try:
            result = json.loads(text)
        except json.JSONDecodeError as e:
            # rego-cpp embeds "(error ...)" terms in a result when a builtin failed inside a collection.
            raise AuditError(f"regopy returned an error inside data.{path}: {_error_excerpt(text)}") from e
        expressions = result.get("expressions") if isinstance(result, dict) else None
        if not expressions:
            raise Undefined(path)
        return expressions[0]

    def close(self) -> None:
        """Drop the interpreter."""
        self._interpreter = None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:6]) if lines else "(no message)"


def _error_excerpt(text: str) -> str:
    match = re.search(r"errormsg[^)]*", text)
    return match.group(0) if match else text[:200]


def _test_names(module: Module) -> list[str]:
    """Test rules and their input rules: the entry points a test run queries."""
    names: list[str] = []
    for t in find_tests(module):
        names.append(t.name)
        if t.input_rule is not None:
            names.append(t.input_rule)
    return names
