"""Action plugin for gapseal_record: no module call when the host's record already has exactly these bytes.

The record's bytes are made by the module's own ``record_bytes`` (``library/gapseal_record.py``, the one home of the
record's shape), loaded here on the controller. When they hash to ``current_sha256`` - the digest of the host's
record as the host state (preflight role) read it at the start of the play - the record is up to date and the task
returns unchanged without contacting the host; otherwise the module runs as before (and compares again itself).
"""

from __future__ import annotations

import hashlib
import importlib.util
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

RECORD_ARGS = ("path", "root", "bundle", "models", "builds", "services", "images")
_DEFAULTS: dict[str, Any] = {"models": [], "builds": [], "services": [], "images": []}


class ActionModule(ActionBase):
    """Compare the record on the controller with the host state's digest; run the module only when they differ."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset((*RECORD_ARGS, "current_sha256"))

    def _record_bytes(self, params: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
        path = self._shared_loader_obj.module_loader.find_plugin("gapseal_record")
        if not path:
            return None
        spec = importlib.util.spec_from_file_location("_gapseal_record_module", path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            record, data = module.record_bytes(params)
        except (KeyError, TypeError, ValueError):
            return None  # the module reports the malformed field
        return record, data

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        """Skip the host when its record is current; else write it through the module."""
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        current = args.pop("current_sha256", None)
        if current is not None and not isinstance(current, str):
            raise AnsibleActionFail(f"current_sha256 must be a string, got {current!r}")
        if current:
            made = self._record_bytes({**_DEFAULTS, **{k: args[k] for k in RECORD_ARGS if k in args}})
            if made is not None and "sha256:" + hashlib.sha256(made[1]).hexdigest() == current:
                result.update(changed=False, record=made[0], path=args.get("path"))
                return result
        result.update(self._execute_module(module_name="gapseal_record", module_args=args, task_vars=task_vars))
        return result
