"""The policy engine interface: load a checked policy set, evaluate facts, run the Rego tests.

Two implementations: ``RegopyEngine`` (in-process, the default) and ``OpaServerEngine`` (an OPA server through
``opa-python-client``). Both query each rule package's *document* (``data.gapseal.<domain>``), never a defaulted
rule, and both run the builtin check before anything is evaluated.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gapseal.audit.engines.builtins import check_builtins
from gapseal.audit.engines.policyset import Module, PolicySet, RegoTest
from gapseal.errors import AuditError


class Undefined(Exception):  # noqa: N818 - a result kind, not an error condition
    """The queried document is undefined."""


@dataclass(frozen=True)
class TestOutcome:
    """The result of one Rego test."""

    __test__ = False  # not a pytest test class

    test: RegoTest
    passed: bool
    detail: str
    """Why it failed (``false``, ``undefined``, or an engine error); empty when it passed."""


class PolicyEngine(abc.ABC):
    """A Rego engine gapseal can evaluate its policies with."""

    #: Short engine name used in messages ("regopy", "opa-server").
    kind: str = "engine"

    def __init__(self) -> None:
        self._policy_set: PolicySet | None = None
        self._tests_loaded = False

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """What the engine is, for the results document (e.g. ``regopy 1.5.2``)."""

    @abc.abstractmethod
    def supports_builtin(self, name: str) -> bool:
        """True when the engine implements builtin ``name``."""

    @abc.abstractmethod
    def _load(self, modules: Sequence[Module], data: Mapping[str, Any]) -> None:
        """Load ``modules`` and the ``data`` document, replacing anything loaded before."""

    @abc.abstractmethod
    def query_document(self, path: str, input_document: Mapping[str, Any] | None) -> Any:
        """Return the value of ``data.<path>`` for ``input_document``; raise ``Undefined`` when it has none."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources."""

    def __enter__(self) -> PolicyEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def policy_set(self) -> PolicySet:
        """The loaded policy set."""
        if self._policy_set is None:
            raise AuditError(f"no policies loaded into the {self.kind} engine")
        return self._policy_set

    def load(self, policy_set: PolicySet, *, include_tests: bool = False) -> None:
        """Check every module's builtin calls against this engine, then load the modules and data."""
        modules = policy_set.modules if include_tests else policy_set.policy_modules
        check_builtins(modules, self.supports_builtin, self.kind)
        self._load(modules, policy_set.data)
        self._policy_set = policy_set
        self._tests_loaded = include_tests

    def evaluate(self, input_document: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Evaluate every rule package on ``input_document``; return each package's ``deny`` violations.

        The packages' common parent document (``data.gapseal``) is queried once, so the input crosses to the engine
        once (a 1000-rule firewall's input is most of a megabyte); with test modules loaded, each package document is
        queried on its own instead (the parent would evaluate every test too).
        """
        packages = self.policy_set.rule_packages
        root = rule_root(packages)
        documents: dict[str, Any] = {}
        if root is not None and not self._tests_loaded:
            try:
                tree = self.query_document(root, input_document)
            except Undefined as e:
                raise AuditError(f"document data.{root} is undefined in the {self.kind} engine") from e
            for package in packages:
                node: Any = tree
                for part in package[len(root) + 1 :].split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                documents[package] = node
        else:
            for package in packages:
                try:
                    documents[package] = self.query_document(package, input_document)
                except Undefined:
                    documents[package] = None
        out: dict[str, list[dict[str, Any]]] = {}
        for package in packages:
            document = documents[package]
            if document is None:
                raise AuditError(f"package document data.{package} is undefined in the {self.kind} engine")
            if not isinstance(document, dict):
                raise AuditError(f"package document data.{package} is not an object: {type(document).__name__}")
            deny = document.get("deny", [])
            if not isinstance(deny, list) or not all(isinstance(v, dict) for v in deny):
                raise AuditError(f"data.{package}.deny is not a set of violation objects")
            out[package] = deny
        return out

    def run_tests(self) -> list[TestOutcome]:
        """Run every ``test_*`` rule of the loaded policy set (load it with ``include_tests=True``).

        A test with an ``input_<name>`` rule runs with that rule's value as the input document; others with ``{}``.
        """
        outcomes: list[TestOutcome] = []
        for test in self.policy_set.tests:
            try:
                test_input: dict[str, Any] = {}
                if test.input_rule is not None:
                    value = self.query_document(f"{test.package}.{test.input_rule}", {})
                    if not isinstance(value, dict):
                        outcomes.append(TestOutcome(test, False, f"{test.input_rule} is not an object"))
                        continue
                    test_input = value
                value = self.query_document(f"{test.package}.{test.name}", test_input)
            except Undefined as e:
                what = "its input rule" if str(e).endswith(str(test.input_rule)) else "the test"
                outcomes.append(TestOutcome(test, False, f"undefined: {what} did not hold"))
                continue
            except AuditError as e:
                outcomes.append(TestOutcome(test, False, f"error: {e.message}"))
                continue
            if value is True:
                outcomes.append(TestOutcome(test, True, ""))
            else:
                outcomes.append(TestOutcome(test, False, f"evaluated to {value!r}, expected true"))
        return outcomes


def rule_root(packages: Sequence[str]) -> str | None:
    """The common parent package of ``packages`` (``gapseal`` for ``gapseal.egress`` ...), or None."""
    if not packages:
        return None
    parts = [p.split(".") for p in packages]
    common: list[str] = []
    for segment in zip(*parts, strict=False):
        if len(set(segment)) != 1:
            break
        common.append(segment[0])
    if not common or any(len(p) == len(common) for p in parts):
        return None
    return ".".join(common)
