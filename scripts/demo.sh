#!/usr/bin/env bash
# make demo: the main job end to end on this machine, with embedded defaults.
#   the security team: key pair -> signed bundle of a real LLM (Gemma 3 270M + llama.cpp's server, CPU build real,
#                      GPU builds placeholders) + gapseal's own wheels -> tar and split parts
#   the operator:      verify the tar and the split set offline -> inspect -> install onto a real systemd host
#                      (booted here under systemd-nspawn, no route out) with egress lockdown -> ask the model
#   the auditor:       audit the serving host, sign the evidence, verify it offline
# Everything lands in demo-out/ (recreated each run). Nothing leaves this machine: the host is a network namespace
# whose only link is to this machine (GAPSEAL_TEST_SUBNET, default 10.231; the demo uses host index 250).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/demo-out"
rm -rf "$out"
mkdir -p "$out/keys"
export GAPSEAL_STATE_DIR="$out/state"          # the verifying host's rollback high-water marks
export SOURCE_DATE_EPOCH=1767225600            # 2026-01-01: a reproducible bundle
export GAPSEAL_KEY_PASSPHRASE="demo passphrase, not a secret"
bundle="clinic-chat-2.0.0"
wheels="${GAPSEAL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gapseal/wheels}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "security team: generate an encrypted ECDSA P-256 signing key"
gapseal keys generate "$out/keys/security-team"

step "security team: build the signed bundle from examples/clinic-chat.yaml (Gemma 3 270M, llama.cpp, gapseal itself)"
gapseal bundle create "$here/examples/clinic-chat.yaml" --key "$out/keys/security-team.key" \
  --out "$out/$bundle" --include-self --wheels-from "$wheels"

step "security team: pack it for transport, whole and split for small removable media"
gapseal bundle pack "$out/$bundle" --out "$out/$bundle.gapseal.tar"
mkdir -p "$out/usb"
gapseal bundle pack "$out/$bundle" --out "$out/usb/$bundle.gapseal.tar" --part-size 128MiB

step "operator, inside the air gap: verify the tar offline against the security team's public key"
gapseal bundle verify "$out/$bundle.gapseal.tar" --key "$out/keys/security-team.pub"

step "operator: verify the split set from its first part"
gapseal bundle verify "$out/usb/$bundle.gapseal.part0001.tar" --key "$out/keys/security-team.pub"

step "operator: unpack safely and inspect what the bundle holds"
gapseal bundle unpack "$out/$bundle.gapseal.tar" --out "$out/unpacked"
gapseal bundle inspect "$out/unpacked" --key "$out/keys/security-team.pub"

step "operator: boot the air-gapped server (Debian 12, systemd as PID 1, under systemd-nspawn; no route out)"
PYTHONPATH="$here" python -m tests.hosts.nspawn serve --workdir "$out/host" --index 250 --outside-port 8443 \
  --inventory "$out/inventory.yml" --ready "$out/host.json" > "$out/host.log" 2>&1 &
host_pid=$!
trap 'kill -TERM "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do
  [ -s "$out/host.json" ] && break
  kill -0 "$host_pid" 2>/dev/null || { cat "$out/host.log" >&2; echo "the demo host did not boot" >&2; exit 1; }
  sleep 0.25
done
[ -s "$out/host.json" ] || { echo "the demo host did not boot in time (log: $out/host.log)" >&2; exit 1; }

step "operator: install the verified bundle (Ansible over ssh; egress lockdown; service on the enclave address)"
"$here/scripts/demo-install.sh" "$out" "$bundle"

step "auditor: audit the serving host and sign the evidence"
"$here/scripts/demo-audit.sh" "$out"

address=$(python3 -c 'import json, sys; print(next(iter(json.load(open(sys.argv[1])).values()))["address"])' \
  "$out/host.json")
step "the installed model answers a question, over the enclave address $address:8080"
python3 "$here/scripts/demo_ask.py" "$address:8080" "What is the capital of France?" | tee "$out/answer.txt"

printf '\n\033[1mdemo complete:\033[0m everything is in %s\n' "$out"
