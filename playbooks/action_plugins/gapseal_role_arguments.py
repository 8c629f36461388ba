"""Action plugin: check every role's arguments against its ``meta/argument_specs.yml`` in one task per host.

A role with an argument spec gets a hidden first task from Ansible that checks the role's variables against it:
one task per role per host, so a play of nine roles starts every host with nine worker processes that do nothing
else (about a quarter of a second of the controller's CPU per host). ``site.yml`` imports its roles with
``rolespec_validate: false`` and runs this task first instead: the same specs (read from each role's
``meta/argument_specs.yml``, the one home of a role's arguments), the same checker Ansible uses
(``ArgumentSpecValidator`` with role semantics), on the same templated values, for every role at once, before any
role has touched the host. A host whose variables do not fit fails here with every misfit named by role and variable.

Arguments: ``roles``, the names of the roles to check (their specs are read from ``<playbook dir>/roles/<name>``).
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

ENTRY_POINT = "main"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: ~30 times faster on these files


def role_options(roles_dir: str, role: str) -> dict[str, Any]:
    """Return the options of ``role``'s ``main`` entry point (an empty dict for a role with no argument spec)."""
    for ext in (".yml", ".yaml"):
        path = os.path.join(roles_dir, role, "meta", "argument_specs" + ext)
        if os.path.isfile(path):
            break
    else:
        if not os.path.isdir(os.path.join(roles_dir, role)):
            raise AnsibleActionFail(f"role {role!r} not found under {roles_dir}")
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_LOADER)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise AnsibleActionFail(f"cannot read {path}: {e}") from e
    specs = data.get("argument_specs") if isinstance(data, dict) else None
    entry = specs.get(ENTRY_POINT) if isinstance(specs, dict) else None
    options = entry.get("options") if isinstance(entry, dict) else None
    if not isinstance(options, dict):
        raise AnsibleActionFail(f"{path}: no argument_specs.{ENTRY_POINT}.options mapping")
    return options


class ActionModule(ActionBase):
    """Check the host's variables against the argument specs of the named roles; contact no host."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("roles",))

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        """Fail naming every role argument that does not fit its spec; else report ok, unchanged."""
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        roles = self._task.args.get("roles")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r for r in roles):
            raise AnsibleActionFail("roles must be a non-empty list of role names")
        roles_dir = os.path.join(str(task_vars.get("playbook_dir") or self._loader.get_basedir()), "roles")
        errors: list[str] = []
        for role in roles:
            options = role_options(roles_dir, role)
            provided = self._templar.template({name: task_vars[name] for name in options if name in task_vars})
            checked = ArgumentSpecValidator(options).validate(provided, validate_role_argument_spec=True)
            errors += [f"role {role}: {message}" for message in checked.error_messages]
        result["changed"] = False
        result["roles"] = list(roles)
        if errors:
            result["failed"] = True
            result["argument_errors"] = errors
            result["msg"] = (
                f"Validation of arguments failed for {task_vars.get('inventory_hostname', 'this host')}: "
                + "; ".join(errors)
                + " (set these variables in the inventory's host or group vars, or the extra vars, to values of"
                " the type each role's meta/argument_specs.yml gives)"
            )
        else:
            result["msg"] = f"the arguments of {len(roles)} role(s) fit their argument specs"
        return result
