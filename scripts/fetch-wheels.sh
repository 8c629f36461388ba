#!/usr/bin/env bash
# Fetches, on the connected side, the wheels `gapseal bundle create --include-self --wheels-from DIR` needs for this
# machine's Python and platform: every runtime dependency of gapseal, plus the build backend (hatchling and its
# dependencies) so the gapseal wheel itself builds from the checkout with no network. Tests use this wheelhouse and
# never touch the network themselves. Runs from `make test` / `make wheels`; idempotent: does nothing when the
# wheelhouse already matches pyproject.toml.
# Wheelhouse: $GAPSEAL_WHEEL_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/gapseal/wheels.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py="${PYTHON:-$here/.venv/bin/python}"
dest="${GAPSEAL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gapseal/wheels}"
stamp="$dest/.complete-$(sha256sum "$here/pyproject.toml" | cut -c1-16)"
[ -f "$stamp" ] && exit 0
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip wheel -q --no-deps --wheel-dir "$tmp" "$here"
# The dependencies as the built wheel declares them, binary only (what --include-self resolves), and the build backend.
"$py" -m pip download -q --only-binary=:all: --dest "$dest" "$tmp"/gapseal-*.whl hatchling
rm -f "$dest"/gapseal-*.whl  # gapseal itself is built fresh from the checkout by every --include-self
rm -f "$dest"/.complete-*
touch "$stamp"
echo "fetched $(ls "$dest"/*.whl | wc -l) wheels into $dest"
