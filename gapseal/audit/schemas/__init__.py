"""Published JSON Schemas of the auditor's documents, generated from the pydantic models.

``facts.v1.schema.json`` is the schema of ``HostFacts`` (``gapseal audit collect`` output, the policies' ``input``).
Regenerate it explicitly after a schema change with ``python -m gapseal.audit.schemas``; a unit test fails while the
published file and the model disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gapseal.audit.facts import FACTS_SCHEMA_VERSION, HostFacts

SCHEMAS_DIR = Path(__file__).resolve().parent
FACTS_SCHEMA_PATH = SCHEMAS_DIR / f"facts.v{FACTS_SCHEMA_VERSION}.schema.json"


def facts_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the facts document."""
    schema = HostFacts.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://gapseal.invalid/schemas/facts.v{FACTS_SCHEMA_VERSION}.schema.json",
        **schema,
    }


def render_facts_schema() -> str:
    """Return the published text of the facts schema (sorted keys, two-space indent, final newline)."""
    return json.dumps(facts_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    """Write the published schema files next to this module."""
    FACTS_SCHEMA_PATH.write_text(render_facts_schema(), encoding="utf-8")
    sys.stdout.write(f"wrote {FACTS_SCHEMA_PATH}\n")
    return 0
