#!/usr/bin/python
"""Ansible module: keep one previous version of a build on the host, and put it back when a new one fails.

Layout under ``<builds dir>/<build>/``: ``<backend>/`` (the installed variant), ``<backend>.venv/`` (its virtual
environment, if it has wheels), ``current.json`` (what runs now and passed its health check: bundle, backend, unit
files, health check) and ``.previous/`` (a copy of all of that from the version before).

- ``keep``: before a new bundle's variant is installed, copy the running version to ``.previous/`` (once per
  version: a rerun or a fallback attempt of the same bundle does not overwrite it).
- ``record``: after a service passed its health check, write ``current.json`` for the installed bundle.
- ``restore``: every variant of the new bundle failed: put ``.previous/`` back (build, venv, unit files,
  ``current.json``); the role then restarts the unit and health-checks it again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_build_history
short_description: Keep one previous version of a gapseal build on the host and restore it
options:
  build_dir: {description: "<builds dir>/<build name>.", type: path, required: true}
  action: {description: keep, record or restore., type: str, required: true, choices: [keep, record, restore]}
  bundle: {description: "The bundle being installed ({name, version, manifest_digest}).", type: dict, default: {}}
  current: {description: "For record: {backend, units, health}.", type: dict, default: {}}
"""

RETURN = r"""
restored: {description: "For restore: what was put back ({bundle, backend, units, health}), or null.", type: dict}
"""


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _digest(meta: dict[str, object] | None) -> object:
    bundle = (meta or {}).get("bundle")
    return bundle.get("manifest_digest") if isinstance(bundle, dict) else None


def _replace_tree(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    if src.exists():
        shutil.copytree(src, dest, symlinks=True)


def keep(root: Path, bundle: dict[str, object]) -> bool:
    """Copy the running version to .previous/ when a different bundle is about to replace it."""
    current = _read(root / "current.json")
    if current is None or _digest(current) == bundle.get("manifest_digest"):
        return False
    previous = root / ".previous"
    if _digest(_read(previous / "meta.json")) == _digest(current):
        return False  # already kept (a rerun, or a fallback attempt of the same install)
    staging = root / ".previous.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    backend = str(current.get("backend"))
    _replace_tree(root / backend, staging / "build")
    _replace_tree(root / f"{backend}.venv", staging / "build.venv")
    (staging / "units").mkdir()
    for unit in current.get("units") or []:
        if Path(str(unit)).is_file():
            shutil.copy2(str(unit), staging / "units" / Path(str(unit)).name)
    _write(staging / "meta.json", current)
    shutil.rmtree(previous, ignore_errors=True)
    os.replace(staging, previous)
    return True


def restore(root: Path) -> dict[str, object] | None:
    """Put .previous/ back in place; return its meta, or None when there is no previous version."""
    previous = root / ".previous"
    meta = _read(previous / "meta.json")
    if meta is None:
        return None
    backend = str(meta.get("backend"))
    _replace_tree(previous / "build", root / backend)
    _replace_tree(previous / "build.venv", root / f"{backend}.venv")
    for unit in meta.get("units") or []:
        saved = previous / "units" / Path(str(unit)).name
        if saved.is_file():
            shutil.copy2(saved, str(unit))
    _write(root / "current.json", meta)
    return meta


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "build_dir": {"type": "path", "required": True},
            "action": {"type": "str", "required": True, "choices": ["keep", "record", "restore"]},
            "bundle": {"type": "dict", "default": {}},
            "current": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    p = module.params
    root = Path(p["build_dir"])
    if module.check_mode:
        module.exit_json(changed=False, restored=None)
    try:
        if p["action"] == "keep":
            module.exit_json(changed=keep(root, p["bundle"]))
        if p["action"] == "record":
            root.mkdir(parents=True, exist_ok=True)
            doc = {"bundle": p["bundle"], **p["current"]}
            changed = _read(root / "current.json") != doc
            if changed:
                _write(root / "current.json", doc)
            module.exit_json(changed=changed)
        meta = restore(root)
        module.exit_json(changed=meta is not None, restored=meta)
    except OSError as e:
        module.fail_json(msg=f"{p['action']} of {root} failed: {e}")


if __name__ == "__main__":
    main()
