"""What a run selects (``--limit`` hosts, ``--tags`` roles), checked before Ansible starts.

Ansible itself runs an empty play for a ``--limit`` that matches nothing and silently ignores an unknown tag, so an
operator's typo would read as "nothing to do". Both are usage errors here (exit 2) naming the valid values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from gapseal.errors import InstallError, UsageError
from gapseal.installer.inventory import Inventory

ALWAYS_TAGS = frozenset({"always", "never", "all", "tagged", "untagged"})
"""Ansible's special tags, valid in any playbook."""


ROLE_TASKS = frozenset({"ansible.builtin.import_role", "import_role", "ansible.builtin.include_role", "include_role"})
"""Task keywords that run a role: their tags are the role's, as a ``roles:`` entry's are."""


def playbook_tags(playbook: Path) -> list[str]:
    """Return the tags the plays of ``playbook`` put on their roles (site.yml: one tag per role), sorted.

    A role is a ``roles:`` entry or a task that imports or includes it (site.yml imports its roles).
    """
    try:
        plays = yaml.safe_load(playbook.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InstallError(f"cannot read the playbook {playbook}: {e}", where=str(playbook)) from e
    tags: set[str] = set()
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        entries = list(play.get("roles") or [])
        for section in ("pre_tasks", "tasks", "post_tasks"):
            entries += [t for t in play.get(section) or [] if isinstance(t, dict) and ROLE_TASKS & set(t)]
        for role in entries:
            if isinstance(role, dict):
                tags.update(str(t) for t in role.get("tags") or [])
    return sorted(tags - ALWAYS_TAGS)


def check_tags(given: Sequence[str], valid: Sequence[str], option: str) -> None:
    """Refuse a tag ``valid`` does not list (``UsageError`` naming every valid one)."""
    unknown = [t for t in given if t not in valid and t not in ALWAYS_TAGS]
    if unknown:
        raise UsageError(
            f"{option}: unknown tag(s) {', '.join(unknown)}",
            hint=f"valid tags: {', '.join(valid)}",
        )


def check_limit(inventory: Inventory, limit: str | None) -> list[str]:
    """Return the hosts ``limit`` selects; a pattern selecting none is a ``UsageError`` naming hosts and groups."""
    if limit is None:
        return inventory.names()
    hosts = inventory.match(limit)
    if not hosts:
        raise UsageError(
            f"--limit {limit!r} matches no host of {inventory.path}",
            hint=f"hosts: {', '.join(inventory.names())}; groups: {', '.join(inventory.groups())}",
        )
    return hosts
