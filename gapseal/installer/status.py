"""``hosts_status``: what every host of an inventory has, from its install record. Changes nothing.

Runs ``playbooks/status.yml`` (the ``gapseal_status`` module reads ``<root>/var/lib/gapseal/installed.json``, asks
systemd for each unit's state and checks every recorded file: present with its size, or re-hashed with ``full``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.installer.inventory import load_inventory
from gapseal.installer.runner import run_playbook
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.resources import playbooks_dir

STATUS_PLAYBOOK = "status.yml"


class _StatusModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class UnitStatus(_StatusModel):
    """A service unit the record lists."""

    name: str
    """Service name."""
    unit: str
    """Unit file path."""
    state: str
    """``active``, ``inactive``, ``failed``…; ``systemd not running`` or ``unit file missing``."""


class FileCheck(_StatusModel):
    """The integrity check of the recorded files."""

    method: Literal["size", "sha256"]
    """``size``: present with the recorded size (quick); ``sha256``: every file re-hashed (``--full``)."""
    total: int
    """Files the record lists."""
    ok: int
    """Files that passed."""
    missing: list[str] = Field(default_factory=list)
    """Recorded files that are gone."""
    changed: list[str] = Field(default_factory=list)
    """Recorded files whose size (or digest) differs, or that are no longer regular files."""
    unreadable: list[str] = Field(default_factory=list)
    """Recorded files that could not be read."""


class HostStatus(_StatusModel):
    """One host."""

    name: str
    """Inventory name."""
    reachable: bool
    """Ansible reached the host."""
    installed: bool = False
    """The host has an install record."""
    bundle: str | None = None
    """Bundle name."""
    version: str | None = None
    """Bundle version."""
    manifest_digest: str | None = None
    """Digest of the signed bundle manifest the record names."""
    variants: dict[str, str] = Field(default_factory=dict)
    """Per build, ``backend/arch``."""
    units: list[UnitStatus] = Field(default_factory=list)
    """Service units and their state."""
    files: FileCheck | None = None
    """Integrity of the installed files."""
    problems: list[str] = Field(default_factory=list)
    """Everything wrong with this host, one entry each (unreachable, unreadable record, damaged files)."""

    @property
    def ok(self) -> bool:
        """Reached, installed, and nothing wrong."""
        return self.reachable and self.installed and not self.problems


class HostsStatus(_StatusModel):
    """The output of ``gapseal hosts status --json``."""

    kind: Literal["gapseal.HostsStatus"] = "gapseal.HostsStatus"
    """Document kind."""
    version: Literal[1] = 1
    """Format version."""
    ok: bool
    """Every host reached, installed and intact."""
    hosts: list[HostStatus]
    """Every host, in inventory order."""


def _host(name: str, reachable: bool, facts: Mapping[str, Any], failures: list[str]) -> HostStatus:
    if not reachable or not facts:
        return HostStatus(name=name, reachable=reachable, problems=failures or ["no status reported"])
    problems = list(failures)
    if facts.get("error"):
        problems.append(str(facts["error"]))
    if not facts.get("installed"):
        return HostStatus(
            name=name, reachable=True, problems=problems or [f"nothing installed ({facts.get('record')})"]
        )
    files = facts.get("files") or {}
    check = FileCheck(
        method="sha256" if facts.get("check") == "sha256" else "size",
        total=int(files.get("total", 0)),
        ok=int(files.get("ok", 0)),
        missing=list(files.get("missing") or []),
        changed=list(files.get("changed") or []),
        unreadable=list(files.get("unreadable") or []),
    )
    problems += [f"missing: {p}" for p in check.missing]
    problems += [f"changed: {p}" for p in check.changed]
    problems += [f"unreadable: {p}" for p in check.unreadable]
    bundle = facts.get("bundle") or {}
    return HostStatus(
        name=name,
        reachable=True,
        installed=True,
        bundle=bundle.get("name"),
        version=bundle.get("version"),
        manifest_digest=bundle.get("manifest_digest"),
        variants={str(k): str(v) for k, v in (facts.get("variants") or {}).items()},
        units=[UnitStatus(**u) for u in facts.get("services") or []],
        files=check,
        problems=problems,
    )


def hosts_status(
    inventory_path: Path,
    *,
    limit: str | None = None,
    full: bool = False,
    envvars: Mapping[str, str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> HostsStatus:
    """Read every host's install record (in inventory order) and check its installed files."""
    inventory = load_inventory(inventory_path)
    run = run_playbook(
        playbooks_dir() / STATUS_PLAYBOOK,
        inventory_path,
        {"status_full": full},
        limit=limit,
        envvars=envvars,
        progress=progress,
    )
    hosts = []
    for name in [n for n in inventory.names() if n in run.hosts]:
        outcome = run.hosts[name]
        hosts.append(
            _host(
                name,
                outcome.unreachable == 0,
                outcome.facts.get("gapseal_status") or {},
                [f"{f.task}: {f.message}" for f in outcome.failures],
            )
        )
    return HostsStatus(ok=bool(hosts) and all(h.ok for h in hosts), hosts=hosts)
