"""Action plugin for gapseal_hardware: probe on the host, parse and select variants on the controller.

The probes run on the host through the ``gapseal_host_state`` module (``library/gapseal_host_state.py``, the one home
of the probe commands), which only runs the tools and returns their raw output, so hosts need nothing but Python.
Parsing (``gapseal.installer.hardware``) and variant selection (``gapseal.installer.variants``) run here, in the
controller's Python where gapseal is installed: the same code ``gapseal hosts detect`` uses, one place to fix.

Arguments:
  builds:              the bundle's builds, ``[{name, variants: [{backend, arch, requires, ...}]}]`` in preference order
  fail_on_no_variant:  fail the host when some build has no variant it satisfies (default true); the message lists
                       every variant's unmet requirements
  return_probes:       also return the raw probe outputs as ``probes`` (default false)
  timeout, cpuinfo_path: passed to the module

Facts set (``ansible_facts``):
  gapseal_hardware:  ``HostHardware`` as JSON (kind gapseal.HostHardware, version 1)
  gapseal_variants:  ``{build name: VariantSelection as JSON + "chosen": {index, backend, arch, path} or null}``

"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Run the gapseal_hardware module, then parse its output and choose variants with gapseal."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("builds", "fail_on_no_variant", "return_probes", "timeout", "cpuinfo_path"))

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        """Probe the host, build the facts, and fail the host if a build has no variant it can run."""
        result = super().run(tmp, task_vars)
        del tmp
        try:
            from gapseal.errors import InstallError
            from gapseal.installer.variants import variants_from_probes
        except ImportError as e:
            raise AnsibleActionFail(
                "gapseal_hardware needs gapseal importable by the Python that runs Ansible on the controller "
                f"(install gapseal into the same environment as ansible-core): {e}"
            ) from e

        args = dict(self._task.args)
        builds = args.get("builds") or []
        if not isinstance(builds, list) or not all(isinstance(b, dict) for b in builds):
            raise AnsibleActionFail("builds must be a list of {name, variants} mappings")
        fail_on_no_variant = bool(args.get("fail_on_no_variant", True))
        module_args = {k: args[k] for k in ("timeout", "cpuinfo_path") if k in args}

        probe = self._execute_module(
            module_name="gapseal_host_state", module_args={**module_args, "probes": True}, task_vars=task_vars
        )
        if probe.get("failed"):
            result.update(probe)
            return result

        host = (task_vars or {}).get("inventory_hostname")
        try:
            hardware, selections, unmet = variants_from_probes(builds, probe.get("probes") or {}, host=host)
        except InstallError as e:
            raise AnsibleActionFail(e.diagnostics()) from e

        result["changed"] = False
        result["ansible_facts"] = {
            "gapseal_hardware": hardware.model_dump(mode="json"),
            "gapseal_variants": selections,
        }
        if args.get("return_probes"):
            result["probes"] = probe.get("probes")
        if unmet and fail_on_no_variant:
            result["failed"] = True
            result["msg"] = "\n".join(unmet)
        return result
