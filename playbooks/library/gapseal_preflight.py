#!/usr/bin/python
"""Ansible module: check a host can take the install (python, architecture, free space) before anything is written."""

from __future__ import annotations

import os
import platform
import sys

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_preflight
short_description: Check python, CPU architecture and free space under gapseal_root; fail with the reason
description:
  - Reads only. Free space is measured on the filesystem that will hold I(root) (its nearest existing ancestor) and
    compared to the bytes still to be written, i.e. I(files) that are not already present with their size.
options:
  root: {description: The host's gapseal_root (may not exist yet)., type: path, required: true}
  files:
    description: "Files to install as {path (relative to root), size}."
    type: list
    elements: dict
    default: []
  arches:
    description: Architectures the bundle has builds for (amd64, arm64); empty accepts any.
    type: list
    elements: str
    default: []
  min_python: {description: Minimum Python version on the host., type: str, default: "3.8"}
  reserve_bytes: {description: Bytes that must stay free after the install., type: int, default: 0}
"""

RETURN = r"""
ansible_facts:
  description: gapseal_preflight with arch, python, filesystem, free_bytes, needed_bytes.
  type: dict
  returned: always
"""


ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return str(n)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            files=dict(type="list", elements="dict", default=[]),
            arches=dict(type="list", elements="str", default=[]),
            min_python=dict(type="str", default="3.8"),
            reserve_bytes=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    root = p["root"]
    machine = platform.machine()
    arch = ARCHES.get(machine, machine)
    python = "{}.{}.{}".format(*sys.version_info[:3])
    facts = {"arch": arch, "machine": machine, "python": python, "python_executable": sys.executable}

    want = tuple(int(x) for x in p["min_python"].split("."))
    if sys.version_info[: len(want)] < want:
        module.fail_json(msg="python {} on the host is older than the required {}".format(python, p["min_python"]))
    if p["arches"] and arch not in p["arches"]:
        module.fail_json(
            msg="host architecture {} ({}) has no build in this bundle (bundle has: {})".format(
                arch, machine, ", ".join(sorted(p["arches"]))
            ),
            ansible_facts={"gapseal_preflight": facts},
        )
    if not os.path.isabs(root):
        module.fail_json(msg=f"gapseal_root {root!r} must be an absolute path")

    needed = 0
    for f in p["files"]:
        target = os.path.join(root, f["path"])
        try:
            if os.lstat(target).st_size == int(f["size"]):
                continue
        except OSError:
            pass
        needed += int(f["size"])
    probe = root
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    facts.update({"filesystem": probe, "free_bytes": free, "needed_bytes": needed})
    if needed + p["reserve_bytes"] > free:
        module.fail_json(
            msg="not enough free space for the install: {} to write under {}, but the filesystem of {} has {} free".format(
                _human(needed + p["reserve_bytes"]), root, probe, _human(free)
            ),
            ansible_facts={"gapseal_preflight": facts},
        )
    if not os.access(probe, os.W_OK):
        module.fail_json(msg="{} is not writable by {}".format(probe, os.environ.get("USER", "this user")))
    module.exit_json(changed=False, ansible_facts={"gapseal_preflight": facts})


if __name__ == "__main__":
    main()
