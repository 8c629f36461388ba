"""Waivers: accepted deviations from a rule on some hosts, each with a justification, an approver and an expiry.

A waiver turns a failing (or unknown) rule on a matching host into status ``waived``; the result records the waiver.
On the day after its expiry a waiver stops applying, and it becomes a finding of its own (rule ``WAIVER-EXPIRED``) on
every host it names, so a forgotten deviation cannot linger.

File format (YAML)::

    apiVersion: gapseal/v1          # spelled as in spec, trust and site files (gapseal.documents)
    kind: Waivers
    waivers:
      - rule: ENCRYPTION-001
        hosts: "lab-*"            # fnmatch glob against the host name in the facts
        justification: Lab hosts hold synthetic data only; disks are wiped on return.
        approver: Jane Doe (CISO)
        expires: 2027-03-31       # last day the waiver applies
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gapseal.audit.engines.policyset import RULE_ID_RE
from gapseal.audit.results import WaiverRef
from gapseal.documents import header_problem
from gapseal.errors import AuditError

EXPIRED_WAIVER_RULE = "WAIVER-EXPIRED"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Waiver(_Model):
    """One accepted deviation."""

    rule: str = Field(description="Id of the rule waived, e.g. 'ENCRYPTION-001'.")
    hosts: str = Field(min_length=1, description="Glob (fnmatch, case-sensitive) matched against host names.")
    justification: str = Field(min_length=1, description="Why the deviation is acceptable (compensating controls).")
    approver: str = Field(min_length=1, description="Who accepted the risk.")
    expires: dt.date = Field(description="Last day the waiver applies (ISO date); it is a finding from the next day.")

    @field_validator("rule")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        if value == EXPIRED_WAIVER_RULE:
            raise ValueError(f"{EXPIRED_WAIVER_RULE} cannot be waived: renew or remove the expired waiver")
        if not RULE_ID_RE.match(value):
            raise ValueError(f"rule id {value!r} does not look like 'EGRESS-001'")
        return value

    @field_validator("justification", "approver", "hosts")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    def matches(self, rule: str, host: str) -> bool:
        """True when this waiver names ``rule`` and its pattern matches ``host``."""
        return self.rule == rule and fnmatch.fnmatchcase(host, self.hosts)

    def names_host(self, host: str) -> bool:
        """True when the host pattern matches ``host``."""
        return fnmatch.fnmatchcase(host, self.hosts)

    def expired(self, today: dt.date) -> bool:
        """True once ``today`` is after the expiry date."""
        return today > self.expires

    def ref(self) -> WaiverRef:
        """The copy recorded in results."""
        return WaiverRef(
            rule=self.rule,
            hosts=self.hosts,
            justification=self.justification,
            approver=self.approver,
            expires=self.expires,
        )


class WaiversFile(_Model):
    """The waivers document."""

    api_version: Literal["gapseal/v1"] = Field(alias="apiVersion", description="Schema version.")
    kind: Literal["Waivers"] = Field(description="Document kind.")
    waivers: tuple[Waiver, ...] = Field(default=(), description="The waivers, in any order.")


@dataclass(frozen=True)
class WaiverSet:
    """Loaded waivers and the digest of the file they came from."""

    waivers: tuple[Waiver, ...]
    digest: str | None
    source: str | None = None

    def active_for(self, rule: str, host: str, today: dt.date) -> Waiver | None:
        """The first unexpired waiver covering ``rule`` on ``host`` (earliest expiry first), if any."""
        candidates = [w for w in self.waivers if w.matches(rule, host) and not w.expired(today)]
        return min(candidates, key=lambda w: w.expires) if candidates else None

    def expired_for(self, host: str, today: dt.date) -> list[Waiver]:
        """Every expired waiver whose pattern names ``host``."""
        return [w for w in self.waivers if w.names_host(host) and w.expired(today)]

    def check_rules(self, known: Iterable[str]) -> None:
        """Raise ``AuditError`` for a waiver naming a rule the policy set does not have (a typo waives nothing)."""
        known = set(known)
        for index, waiver in enumerate(self.waivers):
            if waiver.rule not in known:
                raise AuditError(
                    f"waiver #{index + 1} names unknown rule {waiver.rule}",
                    where=self.source,
                    hint="use a rule id from `gapseal audit evaluate` output or the policies' METADATA",
                )


NO_WAIVERS = WaiverSet(waivers=(), digest=None)


def parse_waivers(text: bytes, *, where: str = "waivers") -> WaiverSet:
    """Parse and validate a waivers file; raise ``AuditError`` naming the problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise AuditError(f"waivers file is not valid YAML: {e}", where=where) from e
    problem = header_problem(raw, "Waivers")
    if problem is not None:
        raise AuditError(f"not a waivers file: {problem}", where=where)
    try:
        document = WaiversFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise AuditError(f"invalid waivers file: {problems}", where=where) from e
    return WaiverSet(waivers=document.waivers, digest="sha256:" + hashlib.sha256(text).hexdigest(), source=where)


def load_waivers(path: Path) -> WaiverSet:
    """Read and validate the waivers file at ``path``."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise AuditError(f"cannot read waivers file: {e.strerror}", where=str(path)) from e
    return parse_waivers(text, where=str(path))
