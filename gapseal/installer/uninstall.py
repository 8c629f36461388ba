"""``uninstall_hosts``: remove everything an install put on each host. Idempotent; check mode changes nothing.

Runs ``playbooks/uninstall.yml`` (the ``gapseal_uninstall`` module: stops and disables the units where systemd runs,
removes their state directories, the unit files, every recorded file, what the install makes whole without listing it
file by file (the builds' venvs and rollback copies, gapseal's own venv and wheels, staging, the image layout), the
directories that leaves empty, and the record last, so a rerun finishes an interrupted run). What stays is reported:
an operator's files, and the egress lockdown unless ``remove_egress``: taking the AI off a host is no reason to open
it to the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.installer.inventory import load_inventory
from gapseal.installer.runner import run_playbook
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.resources import playbooks_dir

UNINSTALL_PLAYBOOK = "uninstall.yml"


class _UninstallModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class HostUninstall(_UninstallModel):
    """One host."""

    name: str
    """Inventory name."""
    status: Literal["removed", "nothing installed", "failed", "unreachable"]
    """What happened (in check mode: what would happen). ``removed`` also when there was no install record but
    something of gapseal's was found and removed (what an older uninstall left, the egress lockdown)."""
    bundle: str | None = None
    """``NAME VERSION`` from the record that was removed."""
    actions: list[str] = Field(default_factory=list)
    """Each unit stopped, file and directory removed (or that would be, in check mode)."""
    kept: list[str] = Field(default_factory=list)
    """What stayed under gapseal's directories, each with the reason: an operator's file, the egress rules, the
    services' state when asked to keep it."""
    egress_kept: bool = True
    """The egress lockdown was left in place."""
    images_kept: list[str] = Field(default_factory=list)
    """Container images the record lists, left in podman's store (``podman rmi`` removes them)."""
    problems: list[str] = Field(default_factory=list)
    """Why the host failed, one entry per failing task."""


class UninstallReport(_UninstallModel):
    """The output of ``gapseal uninstall --json``."""

    kind: Literal["gapseal.UninstallReport"] = "gapseal.UninstallReport"
    """Document kind."""
    version: Literal[1] = 1
    """Format version."""
    ok: bool
    """Every host reached and cleaned (or already clean)."""
    check: bool
    """Check mode: nothing was changed, ``actions`` say what would have been."""
    hosts: list[HostUninstall]
    """Every host, in inventory order."""


def uninstall_hosts(
    inventory_path: Path,
    *,
    check: bool = False,
    limit: str | None = None,
    remove_egress: bool = False,
    keep_state: bool = False,
    envvars: Mapping[str, str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> UninstallReport:
    """Remove the install from every host of the inventory (``--limit`` applies); return what was done per host.

    ``keep_state`` keeps the services' state directories (listed as kept).
    """
    inventory = load_inventory(inventory_path)
    run = run_playbook(
        playbooks_dir() / UNINSTALL_PLAYBOOK,
        inventory_path,
        {"uninstall_remove_egress": remove_egress, "uninstall_keep_state": keep_state},
        check=check,
        limit=limit,
        envvars=envvars,
        progress=progress,
    )
    hosts = []
    for name in [n for n in inventory.names() if n in run.hosts]:
        outcome = run.hosts[name]
        facts = outcome.facts.get("gapseal_uninstall") or {}
        problems = [f"{f.task}: {f.message}" for f in outcome.failures]
        bundle = facts.get("bundle") or {}
        status: Literal["removed", "nothing installed", "failed", "unreachable"]
        if outcome.unreachable:
            status = "unreachable"
        elif problems or not facts:
            status = "failed"
        else:
            # no record but something of gapseal's removed (what an older uninstall left, the egress lockdown)
            status = "removed" if facts.get("installed") or facts.get("actions") else "nothing installed"
        hosts.append(
            HostUninstall(
                name=name,
                status=status,
                bundle=f"{bundle.get('name')} {bundle.get('version')}" if bundle else None,
                actions=list(facts.get("actions") or []),
                kept=[str(k) for k in facts.get("kept") or []],
                egress_kept=bool(facts.get("egress_kept", not remove_egress)),
                images_kept=[str(i) for i in facts.get("images_kept") or []],
                problems=problems or ([] if facts or outcome.unreachable == 0 else ["no result reported"]),
            )
        )
    ok = bool(hosts) and all(h.status in ("removed", "nothing installed") for h in hosts)
    return UninstallReport(ok=ok, check=check, hosts=hosts)
