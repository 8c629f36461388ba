"""``GolibEngine``: gapseal's ``PolicyEngine`` interface over OPA's Go evaluator (opa-golib-python-bindings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from gapseal.audit.engines.builtins import PORTABLE_BUILTINS
from gapseal.audit.engines.interface import PolicyEngine, Undefined
from gapseal.audit.engines.policyset import Module
from gapseal.errors import AuditError


class GolibEngine(PolicyEngine):
    """OPA v1 semantics in-process, for differential tests against regopy."""

    kind = "opa-golib"

    def __init__(self) -> None:
        super().__init__()
        self._engine: OpaEngine | None = None

    @property
    def description(self) -> str:
        return "opa-golib-python-bindings (OPA v1)"

    def supports_builtin(self, name: str) -> bool:
        return name in PORTABLE_BUILTINS

    def _load(self, modules: Sequence[Module], data: Mapping[str, Any]) -> None:
        self.close()
        engine = OpaEngine()
        try:
            for module in modules:
                engine.add_policy(module.path, module.source)
            engine.add_data(dict(data))
            engine.eval_query("true")  # compile now, as an OPA server does on upload
        except OpaError as e:
            engine.close()
            raise AuditError(f"OPA rejected the policies: {e.message}") from e
        self._engine = engine

    def query_document(self, path: str, input_document: Mapping[str, Any] | None) -> Any:
        if self._engine is None:
            raise AuditError("no policies loaded")
        try:
            return self._engine.eval_document(path, dict(input_document) if input_document is not None else None)
        except OpaUndefinedError as e:
            raise Undefined(path) from e
        except OpaError as e:
            raise AuditError(f"OPA failed to evaluate data.{path}: {e.message}") from e

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
