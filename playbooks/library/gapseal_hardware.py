#!/usr/bin/python
# Copyright: gapseal authors. Apache-2.0.
"""Run the hardware tools on a host and return their raw output; gapseal parses it on the controller."""

from __future__ import annotations

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: gapseal_hardware
short_description: Run the GPU tools, uname -m, getconf and ldconfig -p, read /proc/cpuinfo; return raw outputs
description:
  - Runs C(nvidia-smi -q -x), C(nvidia-smi --query-gpu=name,compute_cap,driver_version,uuid --format=csv),
    C(rocminfo), C(vulkaninfo --summary), C(uname -m), C(getconf GNU_LIBC_VERSION) and C(ldconfig -p) (what a
    build's binaries need: glibc version, loader cache), and reads C(/proc/cpuinfo), on the managed host.
  - Returns each probe's raw stdout, stderr and exit status. A tool that is not installed is reported with
    C(present=false) (meaning no such GPU); a tool that fails is reported as it failed, never dropped.
  - Parsing and variant selection happen on the controller, in the C(gapseal_hardware) action plugin, with
    C(gapseal.installer.hardware) and C(gapseal.installer.variants) (the same code C(gapseal hosts detect) uses).
  - Never changes anything; check mode runs the same read-only probes.
options:
  timeout:
    description: Seconds each tool may run before it is reported as timed out.
    type: int
    default: 60
  cpuinfo_path:
    description: The cpuinfo file to read.
    type: path
    default: /proc/cpuinfo
  builds:
    description:
      - "The bundle's builds, C([{name, variants: [{backend, arch, requires, ...}]}]), in preference order."
      - Used by the action plugin on the controller to choose a variant per build; ignored by the module itself.
    type: list
    elements: dict
  fail_on_no_variant:
    description: Action plugin option. Fail the host when a build has no variant it satisfies (the message lists
      every variant's unmet requirements). C(gapseal hosts detect) turns it off.
    type: bool
    default: true
  return_probes:
    description: Action plugin option. Also return the raw probe outputs as C(probes).
    type: bool
    default: false
author: gapseal
"""

EXAMPLES = r"""
- name: Detect GPUs and CPU flags and choose each build's variant
  gapseal_hardware:
    builds: "{{ gapseal_builds }}"
"""

RETURN = r"""
ansible_facts:
  description: Set by the action plugin.
  returned: success
  type: dict
  contains:
    gapseal_hardware:
      description: The host's hardware as gapseal.HostHardware JSON (schemas/host-hardware.v1.schema.json).
      type: dict
    gapseal_variants:
      description: Per build name, gapseal.VariantSelection JSON plus C(chosen) ({index, backend, arch, path} or null).
      type: dict
probes:
  description: Per probe (nvidia_smi_xml, nvidia_smi_query, rocminfo, vulkaninfo, cpuinfo, uname_m, glibc, ldconfig) the raw result.
  returned: always
  type: dict
  sample:
    rocminfo: {present: false, rc: null, stdout: "", stderr: "", error: null}
"""

# Keep equal to gapseal.installer.hardware.PROBE_COMMANDS (a unit test compares them).
PROBE_COMMANDS = {
    "nvidia_smi_xml": ["nvidia-smi", "-q", "-x"],
    "nvidia_smi_query": ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,uuid", "--format=csv"],
    "rocminfo": ["rocminfo"],
    "vulkaninfo": ["vulkaninfo", "--summary"],
    "uname_m": ["uname", "-m"],
    "glibc": ["getconf", "GNU_LIBC_VERSION"],
    "ldconfig": ["ldconfig", "-p"],
}
MAX_OUTPUT = 8 * 1024 * 1024


def _absent():
    return {"present": False, "rc": None, "stdout": "", "stderr": "", "error": None}


def run_probe(module, argv, timeout):
    """Run one tool found on PATH; return {present, rc, stdout, stderr, error}."""
    path = module.get_bin_path(argv[0])
    if path is None:
        return _absent()
    try:
        done = subprocess.run(
            [path] + argv[1:],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"present": True, "rc": None, "stdout": "", "stderr": "", "error": f"timed out after {timeout}s"}
    except OSError as e:
        return {"present": True, "rc": None, "stdout": "", "stderr": "", "error": f"could not run: {e}"}
    out = done.stdout[:MAX_OUTPUT].decode("utf-8", "replace")
    err = done.stderr[:MAX_OUTPUT].decode("utf-8", "replace")
    return {"present": True, "rc": done.returncode, "stdout": out, "stderr": err, "error": None}


def read_cpuinfo(path):
    """Read the cpuinfo file as a probe result (absent when the file does not exist)."""
    if not os.path.exists(path):
        return _absent()
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_OUTPUT).decode("utf-8", "replace")
    except OSError as e:
        return {"present": True, "rc": None, "stdout": "", "stderr": "", "error": f"could not read: {e}"}
    return {"present": True, "rc": 0, "stdout": text, "stderr": "", "error": None}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            timeout=dict(type="int", default=60),
            cpuinfo_path=dict(type="path", default="/proc/cpuinfo"),
            builds=dict(type="list", elements="dict", required=False),
            fail_on_no_variant=dict(type="bool", default=True),
            return_probes=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    timeout = module.params["timeout"]
    if timeout < 1:
        module.fail_json(msg=f"timeout must be at least 1 second, got {timeout}")
    probes = {name: run_probe(module, argv, timeout) for name, argv in PROBE_COMMANDS.items()}
    probes["cpuinfo"] = read_cpuinfo(module.params["cpuinfo_path"])
    module.exit_json(changed=False, probes=probes)


if __name__ == "__main__":
    main()
