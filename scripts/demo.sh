#!/usr/bin/env bash
# make demo: the main job end to end on this machine, with embedded defaults.
#   the security team: key pair -> signed bundle of a real model (MiniLM) + CPU build + docs -> tar and split parts
#   the operator:      verify the tar and the split set offline -> inspect what it holds
# Everything lands in demo-out/ (recreated each run). Nothing leaves this machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/demo-out"
rm -rf "$out"
mkdir -p "$out/keys"
export GAPSEAL_STATE_DIR="$out/state"          # the verifying host's rollback high-water marks
export SOURCE_DATE_EPOCH=1767225600            # 2026-01-01: a reproducible bundle
export GAPSEAL_KEY_PASSPHRASE="demo passphrase, not a secret"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "security team: generate an encrypted ECDSA P-256 signing key"
gapseal keys generate "$out/keys/security-team"

step "security team: build the signed bundle from examples/clinic-assistant.yaml"
gapseal bundle create "$here/examples/clinic-assistant.yaml" --key "$out/keys/security-team.key" \
  --out "$out/clinic-assistant-1.4.0"

step "security team: pack it for transport, whole and split for small removable media"
gapseal bundle pack "$out/clinic-assistant-1.4.0" --out "$out/clinic-assistant-1.4.0.gapseal.tar"
mkdir -p "$out/usb"
gapseal bundle pack "$out/clinic-assistant-1.4.0" --out "$out/usb/clinic-assistant-1.4.0.gapseal.tar" --part-size 32MiB

step "operator, inside the air gap: verify the tar offline against the security team's public key"
gapseal bundle verify "$out/clinic-assistant-1.4.0.gapseal.tar" --key "$out/keys/security-team.pub"

step "operator: verify the split set from its first part"
gapseal bundle verify "$out/usb/clinic-assistant-1.4.0.gapseal.part0001.tar" --key "$out/keys/security-team.pub"

step "operator: unpack safely and inspect what the bundle holds"
gapseal bundle unpack "$out/clinic-assistant-1.4.0.gapseal.tar" --out "$out/unpacked"
gapseal bundle inspect "$out/unpacked" --key "$out/keys/security-team.pub"

if [ -x "$here/scripts/demo-install.sh" ]; then
  step "operator: install the verified bundle onto this machine (Ansible, local connection, prefix under demo-out)"
  "$here/scripts/demo-install.sh" "$out"
fi
if [ -x "$here/scripts/demo-audit.sh" ]; then
  step "auditor: audit what was installed and sign the evidence"
  "$here/scripts/demo-audit.sh" "$out"
fi

printf '\n\033[1mdemo complete:\033[0m everything is in %s\n' "$out"
