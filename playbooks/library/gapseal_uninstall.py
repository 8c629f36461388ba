#!/usr/bin/python
"""Ansible module: remove what installed.json lists (units, files, the record); idempotent and check-mode safe."""

from __future__ import annotations

import json
import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_uninstall
short_description: Remove a gapseal install from a host, exactly what its install record lists
description:
  - Reads installed.json; stops and disables each service unit where systemd runs and removes its unit file,
    removes every file the record lists, then the model and build directories it leaves empty, then the record.
  - Only paths below root are touched, so a damaged record cannot remove anything outside the install.
  - The egress lockdown stays unless remove_egress is true (then the nftables table and its rules file go too).
  - Container images stay in podman's store (listed as images_kept: podman rmi removes them).
  - A host without a record is left alone (changed false): running it twice is the same as once.
options:
  path: {description: Absolute path of installed.json., type: path, required: true}
  root: {description: The host's gapseal_root; nothing outside it is removed., type: path, required: true}
  remove_egress: {description: Also remove the egress lockdown., type: bool, default: false}
  egress_table: {description: The nftables inet table of the lockdown., type: str, default: gapseal_egress}
  egress_rules_path: {description: The lockdown's rules file., type: path, required: true}
  nft: {description: Path of nft., type: path, default: /usr/sbin/nft}
"""

RETURN = r"""
actions: {description: "What was (or in check mode would be) done, one line each.", type: list, returned: always}
"""


def _below(root, path):
    root = os.path.realpath(root)
    real = os.path.realpath(os.path.dirname(path))
    return os.path.isabs(path) and (real == root or real.startswith(root.rstrip("/") + "/"))


def _prune_empty(directory, actions, stop):
    """Remove ``directory``, its subdirectories and then its parents up to (not including) a ``stop`` directory,
    bottom-up, where they hold nothing (a stray file keeps them and everything above it)."""
    if not os.path.isdir(directory) or os.path.islink(directory):
        return
    for dirpath, _, _ in os.walk(directory, topdown=False):
        if not os.listdir(dirpath):
            actions.append(f"remove dir {dirpath}")
            os.rmdir(dirpath)
    parent = os.path.dirname(os.path.normpath(directory))
    while parent not in stop and os.path.isdir(parent) and not os.listdir(parent):
        actions.append(f"remove dir {parent}")
        os.rmdir(parent)
        parent = os.path.dirname(parent)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            root=dict(type="path", required=True),
            remove_egress=dict(type="bool", default=False),
            egress_table=dict(type="str", default="gapseal_egress"),
            egress_rules_path=dict(type="path", required=True),
            nft=dict(type="path", default="/usr/sbin/nft"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    check, root = module.check_mode, p["root"]
    actions = []
    record = None
    try:
        with open(p["path"], "rb") as f:
            record = json.loads(f.read())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        module.fail_json(msg=f"{p['path']}: cannot read the install record: {e}")
    if record is not None and (not isinstance(record, dict) or record.get("kind") != "gapseal.InstalledRecord"):
        module.fail_json(msg=f"{p['path']}: not a gapseal install record; nothing removed")

    if record is not None:
        # Every path the record names is checked before the first removal: a record that lies removes nothing.
        named = [s.get("unit") or "" for s in record.get("services") or []]
        named += [f.get("path") or "" for f in record.get("files") or []]
        for path in named:
            if not _below(root, path):
                module.fail_json(msg=f"the record lists {path!r} outside {root}; nothing removed")
        systemd = os.path.isdir("/run/systemd/system") and module.get_bin_path("systemctl")
        removed_units = False
        for svc in record.get("services") or []:
            unit = svc.get("unit") or ""
            name = os.path.basename(unit)
            if systemd:
                rc, out, _ = module.run_command([systemd, "is-active", name])
                if out.strip() in ("active", "activating", "reloading"):
                    actions.append(f"stop {name}")
                    if not check:
                        module.run_command([systemd, "stop", name], check_rc=True)
                rc, out, _ = module.run_command([systemd, "is-enabled", name])
                if out.strip() == "enabled":
                    actions.append(f"disable {name}")
                    if not check:
                        module.run_command([systemd, "disable", name], check_rc=True)
            if os.path.lexists(unit):
                actions.append(f"remove {unit}")
                removed_units = True
                if not check:
                    os.unlink(unit)
        if systemd and removed_units:
            actions.append("systemctl daemon-reload")
            if not check:
                module.run_command([systemd, "daemon-reload"], check_rc=True)
        for entry in record.get("files") or []:
            path = entry.get("path") or ""
            if os.path.lexists(path):
                actions.append(f"remove {path}")
                if not check:
                    os.unlink(path)
        dirs = [m.get("dir") for m in (record.get("models") or {}).values()]
        dirs += [v.get("dir") for v in (record.get("variants") or {}).values()]
        # gapseal's own top directories stay (the egress rules, other records may live there); the root always does
        stop = {os.path.normpath(os.path.join(root, d)) for d in ("", "opt/gapseal", "var/lib/gapseal", "etc")}
        stop.add("/")
        for directory in sorted(d for d in dirs if d and _below(root, d)):
            if not check:
                _prune_empty(directory, actions, stop)
            elif os.path.isdir(directory):
                actions.append(f"remove dir {directory} (if empty)")
        actions.append(f"remove {p['path']}")
        if not check:
            os.unlink(p["path"])

    if p["remove_egress"]:
        nft = p["nft"]
        if os.path.exists(nft):
            rc, _, _ = module.run_command([nft, "list", "table", "inet", p["egress_table"]])
            if rc == 0:
                actions.append(f"nft delete table inet {p['egress_table']}")
                if not check:
                    module.run_command([nft, "delete", "table", "inet", p["egress_table"]], check_rc=True)
        if os.path.lexists(p["egress_rules_path"]):
            actions.append(f"remove {p['egress_rules_path']}")
            if not check:
                os.unlink(p["egress_rules_path"])

    facts = {"installed": record is not None, "actions": actions, "egress_kept": not p["remove_egress"]}
    if record is not None:
        facts["bundle"] = record.get("bundle") or {}
        # Container images stay in podman's store: another install or a person may use them; the record names them.
        facts["images_kept"] = [i.get("reference") for i in record.get("images") or [] if i.get("reference")]
    module.exit_json(changed=bool(actions), actions=actions, ansible_facts={"gapseal_uninstall": facts})


if __name__ == "__main__":
    main()
