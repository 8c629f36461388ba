"""Canonical JSON: the one byte form gapseal writes for every document it hashes or signs.

Sorted keys, no insignificant whitespace, UTF-8. Verification re-derives a document's expected bytes and compares
them exactly, so an edit that changes meaning and an edit that only changes formatting are both caught.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(document: Any) -> bytes:
    """Return the canonical bytes of a JSON-compatible ``document``."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )
