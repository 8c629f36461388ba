#!/usr/bin/env bash
# make demo, the auditor's part: audit the serving host over ssh (gapseal runs there from the venv the install made
# from the bundle's own wheels), with site data naming the enclave; sign the evidence, then verify it offline the way
# an outsider would, with nothing but the evidence directory and the auditor's public key.
# Usage: scripts/demo-audit.sh DEMO_OUT   (called by scripts/demo.sh; GAPSEAL_KEY_PASSPHRASE set there)
# The audit sends no packet beyond ssh to the host: route lookups and UDP connect() only. Exit 3 (findings) is
# reported, not hidden; any other failure fails the demo.
set -euo pipefail
out="$1"
enclave=$(python3 -c 'import json, sys; print(next(iter(json.load(open(sys.argv[1])).values()))["enclave"])' \
  "$out/host.json")
cat > "$out/site.yaml" <<SITE
apiVersion: gapseal/v1
kind: Site
scope: {organisation: Example Clinic, system: clinic-chat, assessor: demo auditor}
allowlist:
  enclave: [$enclave]
SITE
cat > "$out/waivers.yaml" <<'WAIVERS'
apiVersion: gapseal/v1
kind: Waivers
waivers:
  - rule: ENCRYPTION-001
    hosts: "*"
    justification: "demo host: an overlay root filesystem on this machine, no dm-crypt under the model directory"
    approver: "auditor@example.org"
    expires: "2099-12-31"
WAIVERS
python3 - "$out/inventory.yml" "$out/audit-inventory.yml" <<'PY'
import sys, yaml
inv = yaml.safe_load(open(sys.argv[1]))
for group in inv["all"]["children"].values():
    group.setdefault("vars", {})["gapseal_venv"] = "/opt/gapseal/venv"
yaml.safe_dump(inv, open(sys.argv[2], "w"))
PY

gapseal keys generate "$out/keys/auditor"
rc=0
gapseal audit run -i "$out/audit-inventory.yml" --site "$out/site.yaml" --waivers "$out/waivers.yaml" \
  --out "$out/evidence" --key "$out/keys/auditor.key" || rc=$?
case "$rc" in
  0) verdict="compliant" ;;
  3) verdict="NOT compliant: findings listed above" ;;
  *) echo "audit failed (exit $rc)" >&2; exit "$rc" ;;
esac

printf '\n== an outsider verifies the evidence offline\n'
gapseal evidence verify "$out/evidence" --key "$out/keys/auditor.pub"
printf '\naudit verdict: %s\nreport:        %s\nevidence:      %s (signed: attestation.sigstore.json)\n' \
  "$verdict" "$out/evidence/report.html" "$out/evidence"
