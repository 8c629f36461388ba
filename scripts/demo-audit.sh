#!/usr/bin/env bash
# make demo, the auditor's part: audit this machine (regopy, in-process), sign the evidence, then verify it offline
# the way an outsider would, with nothing but the evidence directory and the auditor's public key.
# Usage: scripts/demo-audit.sh DEMO_OUT   (called by scripts/demo.sh; GAPSEAL_KEY_PASSPHRASE set there)
# The audit sends no packet: route lookups and UDP connect() only. Exit 3 (findings) is an expected outcome on a
# machine that is not air-gapped, so it does not fail the demo; any other failure does.
set -euo pipefail
out="$1"

# Audit the prefix the demo installed into (the install record names it), or the whole machine if nothing was.
record=$(find "$out" -path '*/var/lib/gapseal/installed.json' -print -quit 2>/dev/null || true)
root=/
if [ -n "$record" ]; then
  root=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["root"])' "$record")
fi

gapseal keys generate "$out/keys/auditor"
rc=0
gapseal audit run --root "$root" --out "$out/evidence" --key "$out/keys/auditor.key" || rc=$?
case "$rc" in
  0) verdict="compliant" ;;
  3) verdict="NOT compliant: findings listed above (expected here: this machine is not air-gapped)" ;;
  *) echo "audit failed (exit $rc)" >&2; exit "$rc" ;;
esac

printf '\n== an outsider verifies the evidence offline\n'
gapseal evidence verify "$out/evidence" --key "$out/keys/auditor.pub"
printf '\naudit verdict: %s\nreport:        %s\nevidence:      %s (signed: attestation.sigstore.json)\n' \
  "$verdict" "$out/evidence/report.html" "$out/evidence"
