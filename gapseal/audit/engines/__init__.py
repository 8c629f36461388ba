"""Policy engines: regopy in-process (default) and an OPA server (``--opa-url``), behind one interface."""

from __future__ import annotations

from gapseal.audit.engines.interface import PolicyEngine, TestOutcome, Undefined
from gapseal.audit.engines.policyset import PolicySet, load_policy_set


def make_engine(opa_url: str | None = None) -> PolicyEngine:
    """Return the OPA server engine for ``opa_url``, or the in-process regopy engine when it is None."""
    if opa_url:
        from gapseal.audit.engines.opa_server import OpaServerEngine

        return OpaServerEngine(opa_url)
    from gapseal.audit.engines.regopy_engine import RegopyEngine

    return RegopyEngine()


__all__ = ["PolicyEngine", "PolicySet", "TestOutcome", "Undefined", "load_policy_set", "make_engine"]
