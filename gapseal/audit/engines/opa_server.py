"""The alternative engine: an OPA server the user names (``--opa-url``), through ``opa-python-client``.

The policy set is uploaded through OPA's Policy API (``PUT /v1/policies/gapseal/<path>``, dependencies first; stale
``gapseal/`` policies from an earlier upload are deleted) and its data through the Data API (``PUT /v1/data/<key>``);
each package document is queried with ``POST /v1/data/<package path>``. OPA compiles policies on upload and rejects an
unknown function there, so an unsupported builtin fails loudly; the portable-builtin check runs before upload too.
Nothing is sent anywhere but the URL the user gave.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from gapseal.audit.engines.builtins import PORTABLE_BUILTINS
from gapseal.audit.engines.interface import PolicyEngine, Undefined
from gapseal.audit.engines.policyset import Module
from gapseal.errors import AuditError, UsageError

POLICY_ID_PREFIX = "gapseal/"
_IMPORT_RE = re.compile(r"^import\s+data\.([\w.]+)", re.MULTILINE)


class OpaServerEngine(PolicyEngine):
    """An OPA server reached over HTTP(S) at a URL the user named."""

    kind = "opa-server"

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        super().__init__()
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"--opa-url must be http(s)://HOST[:PORT], got {url!r}")
        if parsed.path not in ("", "/") or parsed.query or parsed.username:
            raise UsageError(f"--opa-url takes no path, query or credentials: {url!r}")
        try:
            from opa_client import OpaClient
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise AuditError("opa-python-client is not installed", hint="pip install opa-python-client") from e
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        port = parsed.port or (443 if parsed.scheme == "https" else 8181)
        self._client = OpaClient(
            host=parsed.hostname, port=port, ssl=parsed.scheme == "https", timeout=timeout, retries=0
        )

    @property
    def description(self) -> str:
        """``opa-server <url>``."""
        return f"opa-server {self.url}"

    def supports_builtin(self, name: str) -> bool:
        """OPA implements every portable builtin; anything else is refused before upload (and by OPA's compiler)."""
        return name in PORTABLE_BUILTINS

    def _load(self, modules: Sequence[Module], data: Mapping[str, Any]) -> None:
        wanted = {POLICY_ID_PREFIX + m.path for m in modules}
        try:
            existing = self._client.get_policies_list()
        except Exception as e:  # opa-python-client raises requests and its own errors
            raise self._error("cannot list policies", e) from e
        for policy_id in existing:
            if policy_id.startswith(POLICY_ID_PREFIX) and policy_id not in wanted:
                self._call("delete stale policy " + policy_id, self._client.delete_policy, policy_id)
        for key, value in sorted(data.items()):
            if not isinstance(value, dict):
                raise AuditError(f"data.{key} must be an object to upload it to OPA")
            self._call(f"upload data.{key}", self._client.update_or_create_data, dict(value), key)
        for module in dependency_order(modules):
            self._call(
                f"upload {module.path}",
                self._client.update_policy_from_string,
                module.source,
                POLICY_ID_PREFIX + module.path,
                rego_compat=False,  # never let the client rewrite a policy
            )

    def query_document(self, path: str, input_document: Mapping[str, Any] | None) -> Any:
        """``POST /v1/data/<path>``; ``Undefined`` when the response has no ``result``."""
        response = self._call(
            f"query data.{path}",
            self._client.query_rule,
            dict(input_document) if input_document is not None else {},
            path,
        )
        if not isinstance(response, dict):
            raise AuditError(f"OPA answered data.{path} with a non-object", where=self.url)
        if "result" not in response:
            raise Undefined(path)
        return response["result"]

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close_connection()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # opa-python-client raises requests and its own errors
            raise self._error(what, e) from e

    def _error(self, what: str, e: Exception) -> AuditError:
        detail = getattr(e, "message", None) or str(e)
        errors = getattr(e, "errors", None)
        if errors:
            detail += ": " + "; ".join(_describe(err) for err in errors)
        response = getattr(e, "response", None)
        if response is not None and getattr(response, "text", None):
            detail += f": {response.text[:500]}"
        return AuditError(f"OPA server: {what} failed: {detail}", where=self.url)


def _describe(err: Any) -> str:
    if not isinstance(err, dict):
        return str(err)
    loc = err.get("location") or {}
    place = f"{loc.get('file', '')}:{loc.get('row', '')}" if loc else ""
    return f"{place} {err.get('message', '')}".strip()


def dependency_order(modules: Sequence[Module]) -> list[Module]:
    """Order ``modules`` so each comes after the modules of every package it imports (OPA compiles on upload)."""
    remaining = list(modules)
    packages = {m.package for m in modules}
    done: set[str] = set()
    ordered: list[Module] = []
    while remaining:
        ready = [
            m
            for m in remaining
            if all(p in done or p not in packages or p == m.package for p in _IMPORT_RE.findall(m.source))
        ]
        if not ready:  # an import cycle: upload the rest in order and let OPA report it
            ready = remaining[:1]
        for m in ready:
            remaining.remove(m)
            ordered.append(m)
        done |= {m.package for m in ready} - {m.package for m in remaining}
    return ordered
