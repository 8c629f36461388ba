#!/usr/bin/env bash
# make demo, the operator's install step: the verified bundle onto this machine with the embedded default inventory
# (Ansible local connection into a gapseal_root prefix under the demo's output; egress lockdown skipped, because
# locking this very machine's outbound traffic down is not the demo's business).
set -euo pipefail
out=$1
cat > "$out/inventory.yml" <<INV
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
      gapseal_root: $out/root
      egress_lockdown: false
INV
gapseal install "$out/clinic-assistant-1.4.0" -i "$out/inventory.yml" --key "$out/keys/security-team.pub" \
  --report "$out/install-report.json"
echo "installed into $out/root (record: $out/root/var/lib/gapseal/installed.json)"
