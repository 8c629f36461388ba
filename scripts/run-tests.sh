#!/usr/bin/env bash
# Runs the whole pytest suite with the venv first on PATH (ansible-playbook, gapseal,
# model_signing must be found by subprocesses). pytest's exit 5 (no tests collected)
# is a failure here: a suite that ran nothing has proven nothing.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$here/.venv/bin:$PATH"
"$here/.venv/bin/pytest" "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
