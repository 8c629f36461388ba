"""Benchmark: the second delivery. A 2 GiB model whose one 100 MiB file changed; how big is the delta?

Inputs (synthetic, in a temporary directory removed at the end): a model of five real safetensors files
(3 x 600 MiB, 148 MiB, 100 MiB = 2 GiB) plus its config; version 2.0.0 hard-links every file of 1.0.0 except the
100 MiB one, which is rewritten with different bytes.

Baseline, in the same run: the full 2.0.0 bundle, as carried without ``--base``, packed to a tar.
Target (issue 3): the delta, packed to the tar that crosses the gap, is at most the changed bytes + 1%.
Also timed: create (full and delta), ``verify --base`` and ``apply`` (the applied bundle verifies standalone).

Run: ``.venv/bin/python -m bench.bench_delta [--scale 1.0]`` (``--scale 0.1`` for a quick look; the target is checked
at any scale).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

from bench import results
from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import apply_delta, create_delta, take_inventory, verify_delta, write_inventory
from gapseal.bundler.verify import verify_bundle
from gapseal.signing.keys import generate_key_pair, load_private_key, load_public_key

MIB = 1024 * 1024
FILES = {"model-00001.safetensors": 600, "model-00002.safetensors": 600, "model-00003.safetensors": 600}
FILES |= {"model-00004.safetensors": 148, "adapter.safetensors": 100}
CHANGED = "adapter.safetensors"


def write_safetensors(path: Path, size: int, seed: bytes) -> None:
    """A valid safetensors file of exactly ``size`` bytes: one U8 tensor filled from a per-file random block."""
    header = b""
    data = 0
    for _ in range(3):  # the header's length depends on the data size written in it; settle it
        raw = json.dumps({"w": {"dtype": "U8", "shape": [data], "data_offsets": [0, data]}}, separators=(",", ":"))
        header = raw.encode() + b" " * (-len(raw) % 8)
        data = size - 8 - len(header)
    block = os.urandom(MIB - 64) + seed.ljust(64, b"\0")[:64]
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        left = data
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


SPEC = (
    "apiVersion: gapseal/v1\nkind: Bundle\n"
    'metadata: {{name: bench-delta, version: {version}, created: "2026-01-01T00:00:00Z"}}\n'
    "models:\n  - {{name: big, path: model, license: apache-2.0}}\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every file size (1.0: 2 GiB).")
    args = parser.parse_args()
    sizes = {name: max(1, int(mib * args.scale * MIB)) for name, mib in FILES.items()}
    tmp = Path(tempfile.mkdtemp(prefix="gapseal-bench-delta-", dir=os.environ.get("BENCH_TMP")))
    try:
        keys = generate_key_pair(tmp / "signer", None)
        key, pub = load_private_key(keys[0], None), load_public_key(keys[1])
        (tmp / "in1/model").mkdir(parents=True)
        for name, size in sizes.items():
            write_safetensors(tmp / "in1/model" / name, size, name.encode())
        (tmp / "in1/model/config.json").write_text('{"hidden_size": 4096}\n')
        (tmp / "in1/bundle.yaml").write_text(SPEC.format(version="1.0.0"))
        (tmp / "in2/model").mkdir(parents=True)
        for p in (tmp / "in1/model").iterdir():
            if p.name != CHANGED:
                os.link(p, tmp / "in2/model" / p.name)
        write_safetensors(tmp / "in2/model" / CHANGED, sizes[CHANGED], b"changed in 2.0.0")
        (tmp / "in2/bundle.yaml").write_text(SPEC.format(version="2.0.0"))
        model_bytes = sum(sizes.values())
        changed = sizes[CHANGED]

        t0 = time.perf_counter()
        base = create_bundle(tmp / "in1/bundle.yaml", key, tmp / "v1").path
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = create_bundle(tmp / "in2/bundle.yaml", key, tmp / "v2-full")
        t_full = time.perf_counter() - t0
        t0 = time.perf_counter()
        delta = create_delta(tmp / "in2/bundle.yaml", key, tmp / "v2-delta", base)
        t_delta = time.perf_counter() - t0
        assert delta.full.manifest_digest == full.manifest_digest
        t0 = time.perf_counter()
        write_inventory(take_inventory([base]), tmp / "have.json")
        t_inventory = time.perf_counter() - t0
        t0 = time.perf_counter()
        from_file = create_delta(tmp / "in2/bundle.yaml", key, tmp / "v2-delta-from-file", tmp / "have.json")
        t_delta_file = time.perf_counter() - t0
        assert from_file.marker.omitted == delta.marker.omitted
        shutil.rmtree(from_file.full.path)

        full_tar = pack_layout(full.path, tmp / "v2-full.tar", mtime=0).total_bytes
        shutil.rmtree(full.path)
        (tmp / "v2-full.tar").unlink()
        delta_tar = pack_layout(delta.full.path, tmp / "v2-delta.tar", mtime=0).total_bytes
        delta_dir = tree_bytes(delta.full.path)

        t0 = time.perf_counter()
        verify_delta(tmp / "v2-delta.tar", base, [pub])
        t_verify = time.perf_counter() - t0
        t0 = time.perf_counter()
        applied = apply_delta(tmp / "v2-delta.tar", base, tmp / "v2", [pub])
        t_apply = time.perf_counter() - t0
        standalone = verify_bundle(applied.path, [pub])
        assert standalone.manifest_digest == full.manifest_digest

        limit = changed * 1.01
        ok = delta_tar <= limit
        print(
            f"model: {len(sizes)} weight files + config, {model_bytes / MIB:.0f} MiB; changed: {CHANGED}, "
            f"{changed / MIB:.0f} MiB"
        )
        print(
            f"baseline  full 2.0.0 bundle tar : {full_tar:>12,} bytes  (create {t_full:.1f} s; 1.0.0 took "
            f"{t_base:.1f} s)"
        )
        print(
            f"delta     2.0.0 against 1.0.0 tar: {delta_tar:>12,} bytes  (layout dir {delta_dir:,} bytes; "
            f"create {t_delta:.1f} s)"
        )
        print(f"  left out: {len(delta.marker.omitted)} blobs, {delta.marker.omitted_bytes():,} bytes")
        print(
            f"  far side 'bundle inventory' {t_inventory:.1f} s; create --base have.json {t_delta_file:.1f} s "
            f"(--base OLD hashes the old bundle: {t_delta:.1f} s)"
        )
        print(f"  delta / changed bytes = {delta_tar / changed:.5f}   delta / full = {delta_tar / full_tar:.4f}")
        print(
            f"  verify --base {t_verify:.1f} s; apply {t_apply:.1f} s ({applied.linked} of "
            f"{applied.from_base + applied.from_delta} files hard-linked); applied bundle verifies standalone"
        )
        print(f"target: delta <= changed + 1% = {limit:,.0f} bytes: {'met' if ok else 'MISSED'}")
        results.row(
            "bench_delta",
            f"delta tar, {changed / MIB:.0f} MiB of one model file changed",
            f"{delta_tar:,} bytes",
            f"changed bytes {changed:,}",
            f"{delta_tar / changed:.4f}x (target <= 1.01x)",
            ok,
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
