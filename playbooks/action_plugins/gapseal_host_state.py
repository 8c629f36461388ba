"""Action plugin for gapseal_host_state: one module call per host, then the facts every later role plans from.

The module (``library/gapseal_host_state.py``) reads the host: preflight checks, raw hardware probes, the state of
every file set the install manages (each present file hashed on the host), the builds' rollback state and the
install record's digest. Here, on the controller, the probes are parsed and each build's variant chosen with gapseal
(``gapseal.installer.hardware``, ``gapseal.installer.variants``: the same code as ``gapseal hosts detect``).

Arguments:
  root, preflight, timeout, cpuinfo_path, file_sets, build_dirs, record_path, files_sha256, units, nft_tables, nft:
                       passed to the module (``files`` entries may carry ``src``; only ``{path, digest, size}`` travel)
  builds:              the bundle's builds, in preference order (variant selection); hardware is probed when given

Result: ``failed`` with ``msg`` and ``failure`` (``preflight``: the host cannot take the install; ``host``: the module
did not run, e.g. no Python) - the preflight role reports each under the task that names it - and ``unmet``: one
message per build with no variant this host satisfies (the hardware role fails the host on it).

Facts set (``ansible_facts``):
  gapseal_preflight:   arch, python, free and needed bytes (also set when the preflight check fails)
  gapseal_variants:    as the ``gapseal_hardware`` action sets it (the hardware itself is not kept as a fact here:
                       ``gapseal hosts detect`` reports it)
  gapseal_host_state:  ``{file_sets: {dest: {current, missing, extra, stale_modes, leftovers}}, builds: {dir:
                       {current, previous}}, record_sha256, systemd, files_sha256: {path: digest}, units: {unit:
                       is-enabled}, nft_tables: {table: loaded}}`` - what the later roles skip on

"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

MODULE_ARGS = (
    "root",
    "preflight",
    "timeout",
    "cpuinfo_path",
    "build_dirs",
    "record_path",
    "files_sha256",
    "units",
    "nft_tables",
    "nft",
)


class ActionModule(ActionBase):
    """Run gapseal_host_state once, parse the hardware, choose variants, set the planning facts."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset((*MODULE_ARGS, "file_sets", "builds"))

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        """Read the host in one module call; fail on a preflight problem; list the builds with no variant."""
        result = super().run(tmp, task_vars)
        del tmp
        try:
            from gapseal.errors import InstallError
            from gapseal.installer.variants import variants_from_probes
        except ImportError as e:
            raise AnsibleActionFail(
                "gapseal_host_state needs gapseal importable by the Python that runs Ansible on the controller "
                f"(install gapseal into the same environment as ansible-core): {e}"
            ) from e

        args = dict(self._task.args)
        builds = args.get("builds")
        if builds is not None and (not isinstance(builds, list) or not all(isinstance(b, dict) for b in builds)):
            raise AnsibleActionFail("builds must be a list of {name, variants} mappings")
        file_sets = args.get("file_sets") or []
        if not isinstance(file_sets, list) or not all(isinstance(s, dict) for s in file_sets):
            raise AnsibleActionFail("file_sets must be a list of {dest, staging, files, executable, prune} mappings")
        module_args = {k: args[k] for k in MODULE_ARGS if args.get(k) is not None}
        module_args["probes"] = builds is not None
        module_args["file_sets"] = [
            {
                **{k: v for k, v in s.items() if k != "files"},
                "files": [
                    {"path": f.get("path"), "digest": f.get("digest"), "size": f.get("size")}
                    for f in s.get("files") or []
                    if isinstance(f, dict)
                ],
            }
            for s in file_sets
        ]

        state = self._execute_module(module_name="gapseal_host_state", module_args=module_args, task_vars=task_vars)
        facts: dict[str, Any] = {}
        if "preflight" in state:
            facts["gapseal_preflight"] = state["preflight"]
        if state.get("failed"):
            result.update(state)
            result["failure"] = "preflight" if state.get("failed_check") == "preflight" else "host"
            result["ansible_facts"] = facts
            return result

        if builds is not None:
            host = (task_vars or {}).get("inventory_hostname")
            try:
                _, selections, unmet = variants_from_probes(builds, state.get("probes") or {}, host=host)
            except InstallError as e:
                raise AnsibleActionFail(e.diagnostics()) from e
            # Not gapseal_hardware: no role of the install reads it (hosts detect shows it), and Ansible copies every
            # fact of a host for each of its tasks - the loader cache alone is ~1,800 values, ~10 ms per task and host.
            facts["gapseal_variants"] = selections
            result["unmet"] = unmet
        facts["gapseal_host_state"] = {
            "file_sets": state.get("file_sets") or {},
            "builds": state.get("builds") or {},
            "record_sha256": state.get("record_sha256"),
            "systemd": bool(state.get("systemd")),
            "files_sha256": state.get("files_sha256") or {},
            "units": state.get("units") or {},
            "nft_tables": state.get("nft_tables") or {},
        }
        result["changed"] = False
        result["ansible_facts"] = facts
        return result
