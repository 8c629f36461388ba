#!/usr/bin/python
"""Ansible module: what gapseal installed on this host, read from installed.json, with a quick integrity check."""

from __future__ import annotations

import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_status
short_description: Report the gapseal install record of a host, its units' state and whether its files are intact
description:
  - Reads installed.json (gapseal.installer.record.InstalledRecord) and returns it as the fact gapseal_status,
    with each service unit's state (systemctl is-active where systemd runs) and an integrity check of every file
    the record lists. Changes nothing.
  - The quick check compares each file's presence and size with the record; full re-hashes every file (sha256).
options:
  path: {description: Absolute path of installed.json., type: path, required: true}
  full: {description: Re-hash every file instead of checking presence and size., type: bool, default: false}
"""

RETURN = r"""
ansible_facts:
  description: "gapseal_status: {installed, bundle, variants, services, files: {total, ok, missing, changed}}"
  type: dict
  returned: always
"""

CHUNK = 1 << 20


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _file_state(entry, full):
    try:
        st = os.lstat(entry["path"])
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    if not os.path.isfile(entry["path"]) or os.path.islink(entry["path"]):
        return "changed"
    if st.st_size != entry["size"]:
        return "changed"
    if full:
        try:
            return "ok" if _sha256(entry["path"]) == entry["digest"] else "changed"
        except OSError:
            return "unreadable"
    return "ok"


def _unit_state(module, unit_path):
    if not os.path.exists(unit_path):
        return "unit file missing"
    if not os.path.isdir("/run/systemd/system"):
        return "systemd not running"
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        return "systemctl not found"
    _, out, _ = module.run_command([systemctl, "is-active", os.path.basename(unit_path)])
    return out.strip() or "unknown"


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type="path", required=True), full=dict(type="bool", default=False)),
        supports_check_mode=True,
    )
    path, full = module.params["path"], module.params["full"]
    status = {"installed": False, "record": path, "check": "sha256" if full else "size"}
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read())
    except FileNotFoundError:
        module.exit_json(changed=False, ansible_facts={"gapseal_status": status})
    except (OSError, ValueError) as e:
        status["error"] = f"cannot read the install record: {e}"
        module.exit_json(changed=False, ansible_facts={"gapseal_status": status})
    if not isinstance(record, dict) or record.get("kind") != "gapseal.InstalledRecord":
        status["error"] = "not a gapseal install record (kind is not gapseal.InstalledRecord)"
        module.exit_json(changed=False, ansible_facts={"gapseal_status": status})
    files = {"total": 0, "ok": 0, "missing": [], "changed": [], "unreadable": []}
    for entry in record.get("files") or []:
        files["total"] += 1
        state = _file_state(entry, full)
        if state == "ok":
            files["ok"] += 1
        else:
            files[state].append(entry["path"])
    status.update(
        installed=True,
        bundle=record.get("bundle") or {},
        variants={
            b: "{}/{}".format(v.get("backend"), v.get("arch")) for b, v in (record.get("variants") or {}).items()
        },
        services=[
            {"name": s.get("name"), "unit": s.get("unit"), "state": _unit_state(module, s.get("unit", ""))}
            for s in record.get("services") or []
        ],
        images=[{"name": i.get("name"), "reference": i.get("reference")} for i in record.get("images") or []],
        files=files,
    )
    module.exit_json(changed=False, ansible_facts={"gapseal_status": status})


if __name__ == "__main__":
    main()
