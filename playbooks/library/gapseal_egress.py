#!/usr/bin/python
"""Ansible module: apply gapseal's nftables egress ruleset, checked with nft -c first, atomically, idempotently."""

from __future__ import annotations

import hashlib
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_egress
short_description: Lock outbound traffic down with an nftables inet table, without cutting the live ssh session
description:
  - Phase C(track) checks the ruleset with C(nft -c) and, when gapseal's table is not loaded yet, loads a table that
    only tracks connections (policy accept), so the ssh connection Ansible is using is seen in both directions and
    is ESTABLISHED by the time the drop policy arrives. Run it as an earlier task than C(apply).
  - Phase C(apply) writes the ruleset file (temp file, fsync, rename) and loads it with C(nft -f) in one transaction
    when the file changed or the live table does not carry this ruleset's digest (a chain comment).
options:
  rules: {description: The ruleset text (nft -f syntax)., type: str, required: true}
  path: {description: Where the ruleset file is kept., type: path, required: true}
  table: {description: Name of gapseal's inet table., type: str, default: gapseal_egress}
  nft: {description: The nft executable., type: path, default: /usr/sbin/nft}
  phase: {description: track or apply., type: str, choices: [track, apply], default: apply}
"""

RETURN = r"""
digest: {description: sha256 of the ruleset (also the chain comment)., type: str, returned: always}
live: {description: Whether the table was loaded before this task., type: bool, returned: always}
"""


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type="str", required=True),
            path=dict(type="path", required=True),
            table=dict(type="str", default="gapseal_egress"),
            nft=dict(type="path", default="/usr/sbin/nft"),
            phase=dict(type="str", choices=["track", "apply"], default="apply"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    nft, table, path = p["nft"], p["table"], p["path"]
    digest = hashlib.sha256(p["rules"].encode("utf-8")).hexdigest()[:32]
    rules = p["rules"].replace("@@GAPSEAL_DIGEST@@", digest)
    if not os.path.exists(nft):
        module.fail_json(msg=f"{nft} not found: install nftables on the host or set egress_lockdown: false")

    fd, tmp = tempfile.mkstemp(prefix=".gapseal-egress-", suffix=".nft")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(rules)
        rc, out, err = module.run_command([nft, "-c", "-f", tmp])
    finally:
        os.unlink(tmp)
    if rc != 0:
        module.fail_json(msg=f"the egress ruleset does not pass nft -c: {(err or out).strip()}", rules=rules)

    rc, live_text, _ = module.run_command([nft, "list", "table", "inet", table])
    live = rc == 0
    current = live and (f"gapseal {digest}") in live_text

    if p["phase"] == "track":
        if live or module.check_mode:
            module.exit_json(changed=False, digest=digest, live=live)
        tracking = (
            f"table inet {table} {{\n  chain output {{\n    type filter hook output priority filter; policy accept;\n"
            "    ct state established counter\n  }\n}\n"
        )
        rc, out, err = module.run_command([nft, "-f", "-"], data=tracking)
        if rc != 0:
            module.fail_json(msg=f"cannot load the connection-tracking table: {(err or out).strip()}")
        module.exit_json(changed=True, digest=digest, live=False)

    try:
        with open(path) as f:
            on_disk = f.read()
    except FileNotFoundError:
        on_disk = None
    changed = on_disk != rules or not current
    # Diff mode (gapseal install --check): the firewall rules as they are on disk and as they would be.
    diff = {"before": on_disk or "", "after": rules, "before_header": path, "after_header": path}
    if module.check_mode or not changed:
        module.exit_json(changed=changed, digest=digest, live=live, **({"diff": diff} if module._diff else {}))
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    if on_disk != rules:
        fd, tmp = tempfile.mkstemp(prefix=".egress.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(rules)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    rc, out, err = module.run_command([nft, "-f", path])
    if rc != 0:
        module.fail_json(msg=f"nft -f {path} failed: {(err or out).strip()}")
    module.exit_json(changed=True, digest=digest, live=live, **({"diff": diff} if module._diff else {}))


if __name__ == "__main__":
    main()
