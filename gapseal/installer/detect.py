"""``detect_hosts``: each host's hardware and the variant every build would get there, and why. Changes nothing.

Runs ``playbooks/detect.yml`` (the hardware role only, with ``fail_on_no_variant`` off) through the same
ansible-runner driver as the install, and returns the ``gapseal_hardware`` and ``gapseal_variants`` facts per host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapseal.installer.inventory import load_inventory
from gapseal.installer.runner import run_playbook
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.resources import playbooks_dir

DETECT_PLAYBOOK = "detect.yml"


@dataclass
class HostDetection:
    """What one host has and what each build would get."""

    name: str
    reachable: bool
    hardware: dict[str, Any] | None = None
    """``gapseal.HostHardware`` as JSON."""
    variants: dict[str, Any] = field(default_factory=dict)
    """Per build, ``gapseal.VariantSelection`` as JSON with ``chosen``."""
    errors: list[str] = field(default_factory=list)

    @property
    def unfit(self) -> list[str]:
        """Builds for which no variant fits this host (an install would fail it), sorted."""
        return sorted(b for b, sel in self.variants.items() if isinstance(sel, dict) and not sel.get("chosen"))

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form for ``--json``."""
        return {
            "name": self.name,
            "reachable": self.reachable,
            "hardware": self.hardware,
            "variants": self.variants,
            "errors": self.errors,
            "unfit_builds": self.unfit,
        }


def detect_hosts(
    inventory_path: Path,
    builds: Sequence[Mapping[str, Any]] = (),
    *,
    limit: str | None = None,
    envvars: Mapping[str, str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> list[HostDetection]:
    """Probe every host of the inventory (in inventory order) and evaluate ``builds`` against each."""
    inventory = load_inventory(inventory_path)
    run = run_playbook(
        playbooks_dir() / DETECT_PLAYBOOK,
        inventory_path,
        {"gapseal_builds": [dict(b) for b in builds]},
        limit=limit,
        envvars=envvars,
        progress=progress,
    )
    out = []
    for name in [*inventory.names(), *sorted(set(run.hosts) - set(inventory.names()))]:
        if name not in run.hosts:
            continue
        outcome = run.hosts[name]
        out.append(
            HostDetection(
                name=name,
                reachable=outcome.unreachable == 0,
                hardware=outcome.facts.get("gapseal_hardware"),
                variants=dict(outcome.facts.get("gapseal_variants") or {}),
                errors=[f"{f.task}: {f.message}" for f in outcome.failures],
            )
        )
    return out
