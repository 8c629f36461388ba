#!/usr/bin/env bash
# Installs the Debian packages gapseal's tests and demo use, only those missing.
# Idempotent; needs root (the machines here run as root). Nothing else is fetched.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in systemd-container mmdebstrap skopeo umoci docker-registry podman runc nftables iptables openssh-server iproute2 uidmap chromium poppler-utils busybox-static vulkan-tools mesa-vulkan-drivers rsync; do
  have "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
