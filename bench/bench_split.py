"""Benchmark: a split ``bundle pack`` against the unsplit pack of the same bundle, in the same run.

Target (issue 12): the split pack at least 0.9 times the speed of the unsplit pack of the same bundle, hashing while
it writes (every part's SHA-256, for the parts list and ``SHA256SUMS``; a range has no digest of its own since parts
list version 2) and never reading a part back from disk.

The bundle is real and signed (``bench_unpack.make_model_bundle``: ``--size-mib`` of generated safetensors weights in
three files, default 1536 MiB), in a temporary directory removed at the end. The unsplit pack moves bytes in the
kernel (``copy_file_range``) and hashes nothing; the split pack copies in the kernel too and hashes each copied
stretch from the page cache right after (one SHA-256 per byte). Each side runs in its own child process (peak RSS
from ``wait4``), the sides alternate, the layout is read once before each run (warm cache), outputs are removed and
synced between runs, the median of ``--runs`` is reported. Both fsync their outputs before renaming them into place.

A bound to read the ratio against: the split pack does all the unsplit pack does plus one SHA-256 of every byte
(about 1.4-1.8 GB/s per core here); with 2 cores and nothing else running, that alone caps the ratio near 0.9, and
any other load on the machine takes its share from the hashing side first.

Run: ``.venv/bin/python -m bench.bench_split [--size-mib 1536] [--part-size-mib 512] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import results
from bench.bench_pack import _run, _warm
from bench.bench_unpack import make_model_bundle

TARGET_RATIO = 0.9
RSS_LIMIT_MB = 200
MTIME = 1_767_225_600

_CHILD = r"""
import json, sys, time
from pathlib import Path
from gapseal.bundler.archive import pack_layout
part = int(sys.argv[3])
t0 = time.perf_counter()
pack_layout(Path(sys.argv[1]), Path(sys.argv[2]), mtime=int(sys.argv[4]), part_size=part or None)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def _gbps(total: int, seconds: float) -> str:
    return f"{total / seconds / 1e9:.2f} GB/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=int(os.environ.get("GAPSEAL_BENCH_SPLIT_MIB", "1536")))
    parser.add_argument("--part-size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    args = parser.parse_args(argv)
    python = sys.executable
    part = args.part_size_mib * 2**20

    with tempfile.TemporaryDirectory(prefix="gapseal-bench-split-", dir=args.dir) as d:
        work = Path(d)
        bundle, _ = make_model_bundle(work, args.size_mib)
        total = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        subprocess.run([python, "-c", "import gapseal.bundler.archive"], check=True)  # warm the bytecode cache
        whole_t: list[float] = []
        split_t: list[float] = []
        rss: list[float] = []
        parts = 0
        for _ in range(args.runs):
            for kind, times in (("whole", whole_t), ("split", split_t)):
                out = work / kind
                out.mkdir()
                os.sync()
                _warm(bundle)
                size = part if kind == "split" else 0
                t, r = _run([python, "-c", _CHILD, str(bundle), str(out / "b.tar"), str(size), str(MTIME)])
                times.append(t)
                rss.append(r)
                if kind == "split":
                    parts = len(list(out.glob("b.part*.tar")))
                shutil.rmtree(out)

    whole_m, split_m = statistics.median(whole_t), statistics.median(split_t)
    # The ratio of each back-to-back pair, then their median: on a shared machine the load drifts between runs, and a
    # pair run seconds apart sees the same load far more often than two medians do.
    ratio = statistics.median(w / s for w, s in zip(whole_t, split_t, strict=True))
    peak = max(rss)
    print(f"bundle: {args.size_mib} MiB of weights ({total / 2**20:.0f} MiB in the layout); median of {args.runs} runs")
    print(f"  baseline: unsplit pack (kernel copy, no hashing)   {whole_m:7.3f} s  {_gbps(total, whole_m)}")
    print(
        f"  split pack, {parts} parts of {args.part_size_mib} MiB (every part hashed)  "
        f"{split_m:7.3f} s  {_gbps(total, split_m)}"
    )
    print(
        f"  ratio (split speed / unsplit speed), median of back-to-back pairs: {ratio:.2f}x   target >= {TARGET_RATIO}"
    )
    runs = ", ".join(f"{w:.2f}/{s:.2f}" for w, s in zip(whole_t, split_t, strict=True))
    print(f"  every run (unsplit/split): {runs} s")
    print(f"  peak RSS of pack children: {peak:.1f} MB (limit {RSS_LIMIT_MB} MB; upper bounds, see bench_pack._run)")
    ok = ratio >= TARGET_RATIO and peak < RSS_LIMIT_MB
    results.row(
        "bench_split",
        f"split pack, {args.size_mib} MiB into {parts} parts of {args.part_size_mib} MiB (every part hashed)",
        f"{split_m:.2f} s ({_gbps(total, split_m)})",
        f"unsplit pack (kernel copy, no hashing) {whole_m:.2f} s",
        f"{ratio:.2f}x (target >= {TARGET_RATIO})",
        ok,
    )
    print("PASS" if ok else "BELOW TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
