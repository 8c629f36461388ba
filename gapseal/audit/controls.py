"""The controls catalog: the EU AI Act articles and HIPAA Security Rule sections policy rules support, and why.

The catalog (``policies/controls.yaml``) names each control exactly as its source does, with the words of the
requirement (``requires``). Rules refer to controls by id (``eu-ai-act:art-15``, ``hipaa:164.312(e)(1)``); loading the
policy set checks every id against the catalog. ``citations`` gives, per rule and cited control, a one-line rationale
that quotes the requirement; ``citation_problems`` lists every rule citation without one (a unit test keeps the
shipped policies at none).

``assess_controls`` is the one place that turns per-host rule results into a per-control verdict; the report and the
OSCAL document both show its answer:

``satisfied``
    at least one rule that is evidence for the control passed, and none failed, is unknown or is waived;
``not-satisfied``
    a supporting rule failed on some host;
``unknown``
    a supporting rule could not be decided (a fact was not collected) and none failed;
``waived``
    a supporting rule's violation is covered by a waiver: an accepted deviation, never "satisfied";
``not-assessed``
    no rule that is evidence for the control ran. Rules in ``NOT_EVIDENCE_RULES`` (the waiver-expiry rule) count
    when they fail but their passing assesses nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gapseal.errors import AuditError
from gapseal.resources import policies_dir

if TYPE_CHECKING:
    from gapseal.audit.results import Results

CATALOG_FILE = "controls.yaml"

NOT_EVIDENCE_RULES = frozenset({"WAIVER-EXPIRED"})
"""Rules whose *passing* is no evidence for the controls they cite (the evaluator's waiver-expiry rule: no expired
waiver says nothing about whether the control is met). Their failures still count."""

ControlState = Literal["satisfied", "not-satisfied", "unknown", "waived", "not-assessed"]
#: From worst to best; a framework's state is the worst of its assessed controls.
CONTROL_STATE_ORDER: tuple[ControlState, ...] = ("not-satisfied", "unknown", "waived", "satisfied", "not-assessed")

_QUOTE = re.compile(r'"([^"]+)"')


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Control(_Model):
    """One control: an article of a regulation or a section of a rule."""

    id: str = Field(description="Stable id rules use, '<framework>:<section>', e.g. 'hipaa:164.312(b)'.")
    reference: str = Field(description="The citation exactly as the source writes it, e.g. '45 CFR 164.312(b)'.")
    title: str = Field(description="The control's title in its source, e.g. 'Audit controls'.")
    requires: str = Field(
        min_length=1, description="What the article or section requires, quoted from its text (with its paragraph)."
    )


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
    citations: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Per rule id, per control id it cites: one line saying why, quoting the control's requirement.",
    )

    @model_validator(mode="after")
    def _ids_are_unique(self) -> ControlsCatalog:
        seen: set[str] = set()
        for framework in self.frameworks:
            for control in framework.controls:
                if control.id in seen:
                    raise ValueError(f"control id {control.id!r} appears twice")
                seen.add(control.id)
        return self

    @model_validator(mode="after")
    def _citations_quote_their_control(self) -> ControlsCatalog:
        requires = {c.id: " ".join(c.requires.split()) for f in self.frameworks for c in f.controls}
        for rule, cited in self.citations.items():
            for control_id, rationale in cited.items():
                where = f"citations.{rule}.{control_id}"
                if control_id not in requires:
                    raise ValueError(f"{where}: no control {control_id!r} in the catalog")
                if not rationale.strip() or "\n" in rationale.strip():
                    raise ValueError(f"{where}: the rationale must be one non-empty line")
                quotes = _QUOTE.findall(rationale)
                if not quotes:
                    raise ValueError(f"{where}: the rationale quotes nothing of what the control requires")
                for quote in quotes:
                    for part in (p.strip() for p in quote.split("...")):
                        if part and part not in requires[control_id]:
                            raise ValueError(f"{where}: {part!r} is not in the words of {control_id}")
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

    def rationale(self, rule: str, control_id: str) -> str | None:
        """Why ``rule`` cites ``control_id`` (None when the catalog gives no reason)."""
        return self.citations.get(rule, {}).get(control_id)

    def citation_problems(self, rules: Mapping[str, Iterable[str]]) -> list[str]:
        """Every mismatch between the rules' cited controls (``{rule: controls}``) and the catalog's rationales."""
        problems: list[str] = []
        for rule, controls in sorted(rules.items()):
            cited = set(controls)
            for c in sorted(cited - set(self.citations.get(rule, {}))):
                problems.append(f"{rule} cites {c} without a rationale in {CATALOG_FILE}")
            for c in sorted(set(self.citations.get(rule, {})) - cited):
                problems.append(f"{CATALOG_FILE} gives a rationale for {rule} -> {c}, which the rule does not cite")
        for rule in sorted(set(self.citations) - set(rules)):
            problems.append(f"{CATALOG_FILE} gives rationales for {rule}, which is no rule of the policy set")
        return problems


@dataclass(frozen=True)
class ControlAssessment:
    """One control's verdict over every host, with the counts behind it."""

    id: str
    state: ControlState
    passed: int
    """Host-rule results that passed (rules in ``NOT_EVIDENCE_RULES`` not counted)."""
    failed: int
    unknown: int
    waived: int
    rules: tuple[str, ...]
    """Every rule that cites the control and ran, sorted."""
    failing: tuple[str, ...]
    """``host: rule`` for every failing or unknown result."""
    waived_on: tuple[str, ...]
    """``host: rule`` for every waived result."""

    @property
    def assessed(self) -> bool:
        """False when no rule that is evidence for the control ran."""
        return self.state != "not-assessed"


def control_state(passed: int, failed: int, unknown: int, waived: int) -> ControlState:
    """The verdict for a control from the counts of its supporting results (see the module docstring)."""
    if failed:
        return "not-satisfied"
    if unknown:
        return "unknown"
    if waived:
        return "waived"
    if passed:
        return "satisfied"
    return "not-assessed"


def assess_controls(results: Results, control_ids: Iterable[str]) -> dict[str, ControlAssessment]:
    """Assess every control of ``control_ids`` and every control a result cites, in that order (then sorted)."""
    by_control: dict[str, list[tuple[str, str, str]]] = {}
    for h in results.hosts:
        for r in h.rules:
            for c in r.controls:
                by_control.setdefault(c, []).append((h.host, r.rule, r.status))
    ordered = list(dict.fromkeys(control_ids))
    ordered += sorted(set(by_control) - set(ordered))
    out: dict[str, ControlAssessment] = {}
    for cid in ordered:
        rows = by_control.get(cid, [])
        passed = sum(1 for _, rule, s in rows if s == "pass" and rule not in NOT_EVIDENCE_RULES)
        failed = sum(1 for *_, s in rows if s == "fail")
        unknown = sum(1 for *_, s in rows if s == "unknown")
        waived = sum(1 for *_, s in rows if s == "waived")
        out[cid] = ControlAssessment(
            id=cid,
            state=control_state(passed, failed, unknown, waived),
            passed=passed,
            failed=failed,
            unknown=unknown,
            waived=waived,
            rules=tuple(sorted({rule for _, rule, _ in rows})),
            failing=tuple(f"{h}: {rule}" for h, rule, s in rows if s in ("fail", "unknown")),
            waived_on=tuple(f"{h}: {rule}" for h, rule, s in rows if s == "waived"),
        )
    return out


def worst_control_state(states: Iterable[ControlState]) -> ControlState:
    """The worst state among assessed controls; ``not-assessed`` only when none was assessed."""
    ranks = [CONTROL_STATE_ORDER.index(s) for s in states]
    return CONTROL_STATE_ORDER[min(ranks)] if ranks else "not-assessed"


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
