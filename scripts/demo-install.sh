#!/usr/bin/env bash
# make demo, the operator's install step: the verified bundle onto the systemd host scripts/demo.sh booted (its
# inventory: ssh as root with a key made for the demo, service_bind = the host's enclave address), with egress
# lockdown; then shows the hardened unit and that the host cannot reach a peer standing for "outside".
# Usage: scripts/demo-install.sh DEMO_OUT BUNDLE_NAME
set -euo pipefail
out=$1
bundle=$2
gapseal install "$out/$bundle" -i "$out/inventory.yml" --key "$out/keys/security-team.pub" \
  --report "$out/install-report.json"
read -r name address outside < <(python3 -c '
import json, sys
for name, h in json.load(open(sys.argv[1])).items():
    print(name, h["address"], h["outside"] or "")' "$out/host.json")
python3 - "$out/install-report.json" <<'PY'
import json, sys
for host in json.load(open(sys.argv[1]))["hosts"]:
    for s in host["services"]:
        print(f"{host['name']}: service {s['name']} {s['state']}, ready in {s['ready_seconds']} s, "
              f"systemd-analyze security exposure {s['exposure']} {s['exposure_level']}")
PY

printf '\n== the hardened unit on %s\n' "$name"
ssh -i "$out/host/controller-key/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
  -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "root@$address" \
  systemctl show gapseal-chat.service -p ActiveState,DynamicUser,ProtectSystem,IPAddressDeny,IPAddressAllow

if [ -n "$outside" ]; then
  printf '\n== from %s, an outbound connection to a peer standing for "outside" (%s:8443)\n' "$name" "$outside"
  if ssh -i "$out/host/controller-key/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "root@$address" \
      python3 -c "'import socket; socket.create_connection((\"$outside\", 8443), timeout=3)'" 2>/dev/null; then
    echo "REACHED: the egress lockdown did not hold" >&2
    exit 1
  fi
  echo "blocked (egress lockdown: output policy drop)"
fi
