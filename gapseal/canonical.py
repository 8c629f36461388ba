"""Canonical JSON: the one byte form gapseal writes for every document it hashes or signs.

Sorted keys, no insignificant whitespace, UTF-8. Verification re-derives a document's expected bytes and compares
them exactly, so an edit that changes meaning and an edit that only changes formatting are both caught.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel


def canonical_json(document: Any) -> bytes:
    """Return the canonical bytes of a JSON-compatible ``document`` (NaN and infinities are refused)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def canonical_model_json(model: BaseModel) -> bytes:
    """Return the canonical bytes of a pydantic model, absent (None) fields omitted."""
    return canonical_json(model.model_dump(mode="json", exclude_none=True))
