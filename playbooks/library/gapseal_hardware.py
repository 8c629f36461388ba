#!/usr/bin/python
# Copyright: gapseal authors. Apache-2.0.
"""Documentation of the gapseal_hardware action: probe a host's hardware, choose each build's variant.

The action plugin (playbooks/action_plugins/gapseal_hardware.py) runs the probes through the gapseal_host_state module
(the one home of the probe commands) and parses their output on the controller.
"""

from __future__ import annotations

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


def main():
    """Only reached when the action plugin is missing: the probes live in gapseal_host_state."""
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(argument_spec={}, bypass_checks=True)
    module.fail_json(msg="gapseal_hardware runs through its action plugin (playbooks/action_plugins), not alone")


if __name__ == "__main__":
    main()
