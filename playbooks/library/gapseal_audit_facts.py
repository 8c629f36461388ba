#!/usr/bin/python
"""Ansible module: collect gapseal audit facts on the managed host (read-only) and return the facts document."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gapseal_audit_facts
short_description: Collect gapseal audit facts on the host (read-only)
description:
  - Runs C(gapseal audit collect --json) on the managed host and returns the facts document
    (gapseal.audit.facts.HostFacts, JSON Schema gapseal/audit/schemas/facts.v1.schema.json).
  - Changes nothing on the host (changed is always false) and behaves the same in check mode.
  - Without C(probes) no packet leaves the host; probe targets must be IP addresses.
options:
  root: {description: The host's gapseal_root (prefix of its files)., type: path, default: /}
  probes:
    description: Active egress probe targets, HOST:PORT (TCP) or dns://HOST[:PORT], IP addresses only.
    type: list
    elements: str
    default: []
  probe_timeout: {description: Seconds per active probe., type: float, default: 2.0}
  record: {description: Install record to check instead of ROOT/var/lib/gapseal/installed.json., type: path}
  data_paths: {description: Data directories whose storage to report., type: list, elements: path, default: []}
  gapseal_venv:
    description:
      - Virtualenv gapseal is installed in (its bin/gapseal is run). Without it, gapseal is looked up on PATH,
        beside the Python interpreter running this module, then in /opt/gapseal/venv/bin and /usr/local/bin.
    type: path
  executable: {description: Path of the gapseal executable (overrides gapseal_venv)., type: path}
"""

RETURN = r"""
facts: {description: The facts document (HostFacts)., type: dict, returned: success}
unknown_domains: {description: Domains that could not be collected (policies treat them as failing)., type: list,
  returned: success}
command: {description: The command that was run., type: list, returned: always}
"""

import json  # noqa: E402 - Ansible modules put DOCUMENTATION first
import os  # noqa: E402
import sys  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

FALLBACK_EXECUTABLES = ("/opt/gapseal/venv/bin/gapseal", "/usr/local/bin/gapseal")
DOMAINS = (
    "routes",
    "firewall",
    "dns",
    "processes",
    "proxy",
    "sockets",
    "probes",
    "telemetry",
    "storage",
    "integrity",
    "ssh",
    "logging",
)


def find_executable(module):
    p = module.params
    if p["executable"]:
        return p["executable"]
    if p["gapseal_venv"]:
        return os.path.join(p["gapseal_venv"], "bin", "gapseal")
    found = module.get_bin_path("gapseal")
    if found:
        return found
    beside_interpreter = os.path.join(os.path.dirname(sys.executable), "gapseal")  # interpreter is gapseal's venv
    for candidate in (beside_interpreter, *FALLBACK_EXECUTABLES):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "default": "/"},
            "probes": {"type": "list", "elements": "str", "default": []},
            "probe_timeout": {"type": "float", "default": 2.0},
            "record": {"type": "path"},
            "data_paths": {"type": "list", "elements": "path", "default": []},
            "gapseal_venv": {"type": "path"},
            "executable": {"type": "path"},
        },
        supports_check_mode=True,
    )
    p = module.params
    exe = find_executable(module)
    if exe is None or not os.access(exe, os.X_OK):
        module.fail_json(
            msg=f"gapseal executable not found ({exe or 'not on PATH'}); set gapseal_venv or executable",
            changed=False,
        )
    cmd = [exe, "audit", "collect", "--json", "--root", p["root"], "--probe-timeout", str(p["probe_timeout"])]
    for target in p["probes"]:
        cmd += ["--probe", target]
    if p["record"]:
        cmd += ["--record", p["record"]]
    for d in p["data_paths"]:
        cmd += ["--data-path", d]
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(
            msg=f"gapseal audit collect failed (exit {rc}): {err.strip()}",
            rc=rc,
            stderr=err,
            command=cmd,
            changed=False,
        )
    try:
        facts = json.loads(out)
    except ValueError as e:
        module.fail_json(
            msg=f"gapseal audit collect printed no JSON document: {e}", stdout=out[:2000], command=cmd, changed=False
        )
    if not isinstance(facts, dict) or facts.get("kind") != "gapseal.audit.facts":
        module.fail_json(
            msg="gapseal audit collect printed something that is not a facts document", command=cmd, changed=False
        )
    unknown = [d for d in DOMAINS if isinstance(facts.get(d), dict) and facts[d].get("status") != "ok"]
    module.exit_json(changed=False, facts=facts, unknown_domains=unknown, command=cmd)


if __name__ == "__main__":
    main()
