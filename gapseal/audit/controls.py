"""The controls catalog: the EU AI Act articles and HIPAA Security Rule sections policy rules support.

The catalog (``policies/controls.yaml``) names each control exactly as its source does. Rules refer to controls by id
(``eu-ai-act:art-15``, ``hipaa:164.312(e)(1)``); loading the policy set checks every id against the catalog, and the
evidence report groups findings by framework and control through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gapseal.errors import AuditError
from gapseal.resources import policies_dir

CATALOG_FILE = "controls.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Control(_Model):
    """One control: an article of a regulation or a section of a rule."""

    id: str = Field(description="Stable id rules use, '<framework>:<section>', e.g. 'hipaa:164.312(b)'.")
    reference: str = Field(description="The citation exactly as the source writes it, e.g. '45 CFR 164.312(b)'.")
    title: str = Field(description="The control's title in its source, e.g. 'Audit controls'.")


class Framework(_Model):
    """A regulation or standard and the controls of it that gapseal's rules support."""

    id: str = Field(description="Framework id, the prefix of its control ids (e.g. 'eu-ai-act').")
    title: str = Field(description="Full title of the framework.")
    source: str = Field(description="Where the text is published.")
    controls: tuple[Control, ...] = Field(description="The framework's controls used by the rules.")

    @model_validator(mode="after")
    def _ids_are_prefixed(self) -> Framework:
        for control in self.controls:
            if not control.id.startswith(self.id + ":"):
                raise ValueError(f"control {control.id!r} does not start with its framework id {self.id + ':'!r}")
        return self


class ControlsCatalog(_Model):
    """The catalog document (``policies/controls.yaml``)."""

    api_version: Literal["gapseal/v1"] = Field(description="Schema version of the catalog.")
    kind: Literal["ControlsCatalog"] = Field(description="Document kind.")
    frameworks: tuple[Framework, ...] = Field(description="Frameworks, in report order.")

    @model_validator(mode="after")
    def _ids_are_unique(self) -> ControlsCatalog:
        seen: set[str] = set()
        for framework in self.frameworks:
            for control in framework.controls:
                if control.id in seen:
                    raise ValueError(f"control id {control.id!r} appears twice")
                seen.add(control.id)
        return self

    def control(self, control_id: str) -> Control:
        """Return the control named ``control_id``; raise ``KeyError`` if the catalog lacks it."""
        for framework in self.frameworks:
            for control in framework.controls:
                if control.id == control_id:
                    return control
        raise KeyError(control_id)

    def framework_of(self, control_id: str) -> Framework:
        """Return the framework that holds ``control_id``; raise ``KeyError`` if none does."""
        for framework in self.frameworks:
            if any(c.id == control_id for c in framework.controls):
                return framework
        raise KeyError(control_id)

    def ids(self) -> frozenset[str]:
        """Every control id in the catalog."""
        return frozenset(c.id for f in self.frameworks for c in f.controls)


def parse_catalog(text: str | bytes, *, where: str = CATALOG_FILE) -> ControlsCatalog:
    """Parse and validate a controls catalog; raise ``AuditError`` naming what is wrong."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise AuditError(f"controls catalog is not valid YAML: {e}", where=where) from e
    if not isinstance(raw, dict) or raw.get("kind") != "ControlsCatalog" or raw.get("api_version") != "gapseal/v1":
        raise AuditError(
            "not a controls catalog: expected kind 'ControlsCatalog', api_version 'gapseal/v1'", where=where
        )
    try:
        return ControlsCatalog.model_validate(raw)
    except ValidationError as e:
        raise AuditError(f"invalid controls catalog: {e}", where=where) from e


def load_catalog(path: Path | None = None) -> ControlsCatalog:
    """Load the catalog at ``path`` (default: the shipped ``policies/controls.yaml``)."""
    path = path or policies_dir() / CATALOG_FILE
    try:
        text = path.read_bytes()
    except OSError as e:
        raise AuditError(f"cannot read controls catalog: {e.strerror}", where=str(path)) from e
    return parse_catalog(text, where=str(path))
