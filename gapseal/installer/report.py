"""The install report: per host, what ran, what changed, which variant, what failed; JSON for machines.

``gapseal install --json`` prints it and ``--report FILE`` writes it. Its JSON Schema is published as
``gapseal/schemas/install-report.v1.schema.json`` (``report_schema()``, written by ``gapseal.schemas``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

REPORT_KIND: Literal["gapseal.InstallReport"] = "gapseal.InstallReport"


class _ReportModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ReportBundle(_ReportModel):
    """The verified bundle that was installed."""

    name: str
    """Bundle name."""
    version: str
    """Bundle version."""
    manifest_digest: str
    """Digest of the signed bundle manifest."""
    signer_key_id: str | None = None
    """Key id of the trusted key whose signature verified."""
    bytes: int = 0
    """Bytes of every file in the bundle."""


class ReportFailure(_ReportModel):
    """A failed or unreachable task on a host."""

    task: str
    """Task name (role : task)."""
    message: str
    """Ansible's message: the reason."""
    unreachable: bool = False
    """The host could not be reached at all."""


class ReportServiceAttempt(_ReportModel):
    """One start of a service on one build variant, and what its health check saw."""

    backend: str
    """The variant's backend."""
    healthy: bool
    """Ready within the timeout and the real request answered 2xx."""
    reason: str = ""
    """Why not (empty when healthy)."""
    exit_code: str = ""
    """How the unit's main process ended: ``exited``, ``killed`` or ``dumped`` (empty while it runs)."""
    exit_status: str = ""
    """Its exit status, or the signal (``SIGILL``)."""
    journal: list[str] = Field(default_factory=list)
    """The unit's last journal lines (on failure)."""


class ReportService(_ReportModel):
    """A service unit on a host."""

    name: str
    """Service name."""
    unit: str
    """Unit file path."""
    state: str
    """``started``, ``started, healthy (<backend>)``, ``failed health check`` or ``not started: <why>``."""
    backend: str | None = None
    """The variant the service runs on after any fallback (None when it was not health-checked)."""
    healthy: bool | None = None
    """The health check's verdict (None when the spec declares none or the unit was not started)."""
    ready_seconds: float | None = None
    """Seconds from the health check's start to readiness."""
    exposure: float | None = None
    """``systemd-analyze security`` overall exposure of the unit (0 best, 10 worst), when the host has it."""
    exposure_level: str | None = None
    """Its level word (``OK``, ``MEDIUM``, ``EXPOSED``, ``UNSAFE``)."""
    restored: str | None = None
    """The version restored after every attempt failed, or None."""
    attempts: list[ReportServiceAttempt] = Field(default_factory=list)
    """Every start, in order: the chosen variant, then each fallback."""

    @model_serializer(mode="wrap")
    def _only_what_was_checked(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A service that was not health-checked shows just name, unit and state (as before health checks)."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in ("name", "unit", "state") or v not in (None, [])}


class HostReport(_ReportModel):
    """One host's outcome."""

    name: str
    """Inventory name."""
    status: Literal["ok", "failed", "unreachable"]
    """``ok`` only when no task failed and the host was reached."""
    ok: int
    """Tasks that ran fine (Ansible's ``ok`` count, changed ones included)."""
    changed: int
    """Tasks that changed something (0 on a second run of the same bundle)."""
    failed: int
    """Failed tasks."""
    unreachable: int
    """Unreachable events."""
    skipped: int
    """Skipped tasks."""
    variants: dict[str, str] = Field(default_factory=dict)
    """Per build, the backend chosen for this host."""
    services: list[ReportService] = Field(default_factory=list)
    """Service units and whether they were started."""
    failures: list[ReportFailure] = Field(default_factory=list)
    """Why the host failed, per task."""
    changed_tasks: list[str] = Field(default_factory=list)
    """Names of the tasks that changed something."""


class InstallReport(_ReportModel):
    """The outcome of ``gapseal install``."""

    kind: Literal["gapseal.InstallReport"] = REPORT_KIND
    """Document kind."""
    version: Literal[1] = 1
    """Report format version."""
    ok: bool
    """True only when every host succeeded."""
    check: bool
    """Ansible check mode: nothing was changed, ``changed`` says what would have."""
    bundle: ReportBundle
    """The verified bundle."""
    inventory: str
    """The inventory file."""
    limit: str | None = None
    """The ``--limit`` pattern, if any."""
    tags: list[str] = Field(default_factory=list)
    """The ``--tags``, if any."""
    started: str
    """Start time, RFC 3339 UTC."""
    duration_seconds: float
    """Wall time of the Ansible run."""
    hosts: list[HostReport]
    """Every host Ansible reported on, in inventory order."""
    run_log: str | None = None
    """The directory keeping this run's events.jsonl, install.log and report.json (``gapseal install`` sets it)."""


def report_schema() -> dict[str, Any]:
    """Return the JSON Schema of the install report."""
    return InstallReport.model_json_schema()
