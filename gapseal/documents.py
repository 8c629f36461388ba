"""The header every gapseal YAML file starts with: ``apiVersion: gapseal/v1`` and a ``kind``.

Spec (``Bundle``), trust (``Trust``), waivers (``Waivers``) and site (``Site``) files all spell it the same way, as
Kubernetes-style files do. A file written with another spelling (``api_version``, ``apiversion``) is refused with a
message that names the right one, instead of a generic "not a waivers file".
"""

from __future__ import annotations

from typing import Any

API_VERSION = "gapseal/v1"
"""The only format version this gapseal reads."""

_OTHER_SPELLINGS = ("api_version", "apiversion", "api-version", "ApiVersion", "APIVersion", "apiVersions")


def header_problem(raw: Any, kind: str) -> str | None:
    """Return what is wrong with the header of the parsed document ``raw`` of ``kind``, or None when it is right."""
    expected = f"apiVersion: {API_VERSION} and kind: {kind}"
    if not isinstance(raw, dict):
        return f"expected a YAML mapping starting with {expected}"
    for spelling in _OTHER_SPELLINGS:
        if spelling in raw:
            return f"'{spelling}' is spelled 'apiVersion' in every gapseal file: write {expected}"
    if raw.get("apiVersion") != API_VERSION:
        return f"apiVersion is {raw.get('apiVersion')!r}; this gapseal reads {API_VERSION!r} ({expected})"
    if raw.get("kind") != kind:
        return f"kind is {raw.get('kind')!r}, expected {kind!r} ({expected})"
    return None
