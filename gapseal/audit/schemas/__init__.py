"""Published JSON Schemas of the auditor's documents, generated from the pydantic models.

``facts.v1.schema.json`` is the schema of ``HostFacts`` (``gapseal audit collect`` output, the policies' ``input``).
It is published with every other schema by ``gapseal.schemas`` (``python -m gapseal.schemas``), which a unit test
holds to the model.
"""

from __future__ import annotations

from typing import Any

from gapseal.audit.facts import FACTS_SCHEMA_VERSION, HostFacts


def facts_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the facts document."""
    schema = HostFacts.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://gapseal.invalid/schemas/facts.v{FACTS_SCHEMA_VERSION}.schema.json",
        **schema,
    }
