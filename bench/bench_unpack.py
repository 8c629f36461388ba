"""Benchmark: ``bundle unpack --key`` (unpack and verify in one pass) against ``tar xf`` followed by ``sync``.

Target (issue 12): unpack + verify from a tar or a split set, in one pass, at least 0.9 times the speed of ``tar xf``
followed by ``sync`` on the same tar, with every byte hashed and every rule of the strict reader kept.

The bundle is real and signed: a model of generated safetensors weights (``--size-mib``, default 1536 MiB, in three
files) created with ``create_bundle`` in a temporary directory that is removed at the end, packed once as one tar and
once as a split set (``--part-size-mib``, default 512). Each side runs in its own child process (peak RSS from
``wait4``), the sides alternate, the tar is read once before each run so both start from a warm page cache, and the
reported time is the median of ``--runs`` runs. ``sync`` flushes every file system, ``unpack`` flushes its output's
(``syncfs``): both are durable when they return.

Run: ``.venv/bin/python -m bench.bench_unpack [--size-mib 1536] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import results
from bench.bench_pack import _run

TARGET_RATIO = 0.9
RSS_LIMIT_MB = 200
MTIME = 1_767_225_600
MIB = 1024 * 1024
CHUNK = 4 * MIB

_CHILD = r"""
import json, sys, time
from pathlib import Path
from gapseal.bundler.unpack import unpack_and_verify
from gapseal.signing.keys import load_public_key
key = load_public_key(Path(sys.argv[3]))
t0 = time.perf_counter()
result = unpack_and_verify(Path(sys.argv[1]), Path(sys.argv[2]), trusted_keys=[key])
assert result.verified is not None
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def write_weights(path: Path, size: int, seed: int) -> None:
    """A real safetensors file of one F32 tensor, about ``size`` bytes, written in 4 MiB chunks (never held whole).

    Every chunk differs (its index and the seed lead it), so no layer below can deduplicate or compress it away.
    """
    rows = max(1, size // 4096)
    header = json.dumps({"w": {"dtype": "F32", "shape": [rows, 1024], "data_offsets": [0, rows * 4096]}}).encode()
    header += b" " * (-len(header) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytes(range(256)) * (CHUNK // 256)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left, i = rows * 4096, 0
        while left:
            n = min(CHUNK, left)
            f.write((seed.to_bytes(4, "big") + i.to_bytes(8, "big") + block[12:])[:n])
            left -= n
            i += 1


def make_model_bundle(work: Path, size_mib: int, files: int = 3) -> tuple[Path, Path]:
    """A signed bundle of ``size_mib`` MiB of weights in ``files`` files; return (bundle, public key path)."""
    from gapseal.bundler.create import create_bundle
    from tests.bundles import make_keys

    keys = make_keys(work / "keys")
    for i in range(files):
        write_weights(work / "in" / "model" / f"model-{i:05d}-of-{files:05d}.safetensors", size_mib * MIB // files, i)
    spec = work / "in" / "bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: bench, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        "models:\n  - {name: m, path: model}\n"
    )
    return create_bundle(spec, keys.private, work / "bundle", link=True).path, keys.public_path


def _tar_xf_sync(tar: Path, out: Path) -> tuple[float, float]:
    out.mkdir()
    t0 = time.perf_counter()
    _, rss = _run(["tar", "xf", str(tar), "-C", str(out)])
    subprocess.run(["sync"], check=True)  # noqa: S607 - coreutils
    return time.perf_counter() - t0, rss


def _clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.sync()


def _gbps(total: int, seconds: float) -> str:
    return f"{total / seconds / 1e9:.2f} GB/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=int(os.environ.get("GAPSEAL_BENCH_UNPACK_MIB", "1536")))
    parser.add_argument("--part-size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    args = parser.parse_args(argv)
    python = sys.executable

    from gapseal.bundler.archive import pack_layout

    with tempfile.TemporaryDirectory(prefix="gapseal-bench-unpack-", dir=args.dir) as d:
        work = Path(d)
        bundle, pub = make_model_bundle(work, args.size_mib)
        tar = pack_layout(bundle, work / "b.tar", mtime=MTIME).out
        (work / "split").mkdir()
        split = pack_layout(bundle, work / "split" / "s.tar", mtime=MTIME, part_size=args.part_size_mib * 2**20)
        first = split.out
        total = tar.stat().st_size
        shutil.rmtree(work / "in")  # the inputs are hard links of the bundle's blobs: only the tars matter now
        os.sync()
        subprocess.run([python, "-c", "import gapseal.bundler.unpack"], check=True)  # warm the bytecode cache

        base_t, tar_t, split_t, rss = [], [], [], []
        for _ in range(args.runs):
            _warm_file(tar)
            t, r = _tar_xf_sync(tar, work / "x")
            base_t.append(t)
            _clean(work / "x")
            _warm_file(tar)
            t, r = _run([python, "-c", _CHILD, str(tar), str(work / "u"), str(pub)])
            tar_t.append(t)
            rss.append(r)
            _clean(work / "u")
            for part in split.parts:
                _warm_file(part.path)
            t, r = _run([python, "-c", _CHILD, str(first), str(work / "u"), str(pub)])
            split_t.append(t)
            rss.append(r)
            _clean(work / "u")

    base_m, tar_m, split_m = (statistics.median(v) for v in (base_t, tar_t, split_t))
    # The ratio of each back-to-back pair, then their median: on a shared machine the load drifts between runs, and a
    # pair run seconds apart sees the same load far more often than two medians do.
    r_tar = statistics.median(b / t for b, t in zip(base_t, tar_t, strict=True))
    r_split = statistics.median(b / s for b, s in zip(base_t, split_t, strict=True))
    peak = max(rss)
    print(
        f"bundle: {args.size_mib} MiB of weights in 3 files, tar {total / 2**20:.0f} MiB; split into "
        f"{len(split.parts)} parts of {args.part_size_mib} MiB; median of {args.runs} runs, warm cache"
    )
    print(f"  baseline: tar xf + sync              {base_m:7.3f} s  {_gbps(total, base_m)}")
    print(f"  gapseal unpack --key, tar            {tar_m:7.3f} s  {_gbps(total, tar_m)}   ratio {r_tar:.2f}x")
    print(f"  gapseal unpack --key, split set      {split_m:7.3f} s  {_gbps(total, split_m)}   ratio {r_split:.2f}x")
    print(
        f"  target: ratio >= {TARGET_RATIO} (speed of unpack+verify / speed of tar xf + sync, median of back-to-back"
        " pairs), both forms"
    )
    runs = ", ".join(f"{b:.2f}/{t:.2f}/{s:.2f}" for b, t, s in zip(base_t, tar_t, split_t, strict=True))
    print(f"  every run (baseline/tar/split): {runs} s")
    print(f"  peak RSS of unpack children: {peak:.1f} MB (limit {RSS_LIMIT_MB} MB; upper bounds, see bench_pack._run)")
    ok = r_tar >= TARGET_RATIO and r_split >= TARGET_RATIO and peak < RSS_LIMIT_MB
    for form, seconds, ratio in (("tar", tar_m, r_tar), (f"split set ({len(split.parts)} parts)", split_m, r_split)):
        results.row(
            "bench_unpack",
            f"unpack + verify, {args.size_mib} MiB {form}, every byte hashed and fsync'd",
            f"{seconds:.2f} s ({_gbps(total, seconds)})",
            f"tar xf + sync {base_m:.2f} s",
            f"{ratio:.2f}x (target >= {TARGET_RATIO}; peak RSS {peak:.0f} MB)",
            ratio >= TARGET_RATIO and peak < RSS_LIMIT_MB,
        )
    print("PASS" if ok else "BELOW TARGET")
    return 0 if ok else 1


def _warm_file(path: Path) -> None:
    with path.open("rb", buffering=0) as f:
        while f.read(8 * 1024 * 1024):
            pass


if __name__ == "__main__":
    raise SystemExit(main())
