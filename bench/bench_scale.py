"""Benchmark: how create, verify, pack and unpack scale with the number of files and with bytes.

Target (issue 12): a bundle of 10,000 small files and one of a 20 GB model (generated on the fly, removed after):
create, verify, pack and unpack times grow linearly with files and with bytes, and peak RSS stays under 200 MB.

Each shape is measured at two sizes (a quarter, then the full size) so linearity is a ratio measured in the same run:
the cost per 1,000 files (or per GB) at the full size over the cost at a quarter of it; 1.0 is perfectly linear,
the target is at most 1.5 (room for page-cache effects on a shared 2-core machine). Every operation runs in its own
child process (wall time measured inside it, peak RSS from ``wait4``):

- ``create``: ``create_bundle`` from the generated inputs (hard links, so the inputs cost no second copy);
- ``verify``: ``verify_bundle`` of the bundle directory (every byte hashed);
- ``pack``: ``pack_layout`` into one tar;
- ``unpack``: ``unpack_and_verify`` of that tar with the trusted key (one pass: written, hashed, verified).

Sizes: ``--files`` (default 10,000, each 1-4 KiB) and ``--model-gb`` (default 20; the weights are written in 4 MiB
chunks, never held in memory). ``GAPSEAL_BENCH_SCALE_GB`` and ``GAPSEAL_BENCH_SCALE_FILES`` scale both down for a quick
run; ``make bench`` uses the issue's sizes and needs about 2x the model size free on the work directory's file
system (inputs or unpacked copy, and the tar; the bundle shares the inputs' inodes and both are removed before
unpack).

Each operation runs ``--repeat`` times (default 2; its output removed in between) and the best time is kept.

Run: ``.venv/bin/python -m bench.bench_scale [--files 10000] [--model-gb 20] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import results
from bench.bench_pack import _run
from bench.bench_unpack import write_weights

RSS_LIMIT_MB = 200
LINEAR_LIMIT = 1.5
MTIME = 1_767_225_600
GB = 1_000_000_000

_CHILD = r"""
import json, sys, time
from pathlib import Path
op, a, b, c = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
if op == "create":
    from gapseal.bundler.create import create_bundle
    from gapseal.signing.keys import load_private_key
    key = load_private_key(c, None)
    t0 = time.perf_counter()
    create_bundle(a, key, b, link=True)
elif op == "verify":
    from gapseal.bundler.verify import verify_bundle
    from gapseal.signing.keys import load_public_key
    key = load_public_key(c)
    t0 = time.perf_counter()
    verify_bundle(a, [key])
elif op == "pack":
    from gapseal.bundler.archive import pack_layout
    t0 = time.perf_counter()
    pack_layout(a, b, mtime=int(str(c)))
elif op == "unpack":
    from gapseal.bundler.unpack import unpack_and_verify
    from gapseal.signing.keys import load_public_key
    key = load_public_key(c)
    t0 = time.perf_counter()
    assert unpack_and_verify(a, b, trusted_keys=[key]).verified is not None
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

OPS = ("create", "verify", "pack", "unpack")


def _spec(root: Path, name: str, body: str) -> Path:
    spec = root / "bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        f'metadata: {{name: {name}, version: 1.0.0, created: "2026-01-01T00:00:00Z"}}\n' + body
    )
    return spec


def _many_files(root: Path, count: int) -> tuple[Path, int]:
    """``count`` distinct small files (1-4 KiB) in 100 directories; return (spec, bytes)."""
    total = 0
    for i in range(count):
        d = root / "docs" / f"d{i % 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        data = (f"file {i}\n".encode() * 512)[: 1024 + (i * 37) % 3072]
        (d / f"f{i:06d}.txt").write_bytes(data)
        total += len(data)
    return _spec(root, "many", "files:\n  - {name: docs, path: docs}\n"), total


def _big_model(root: Path, size: int) -> tuple[Path, int]:
    """A model of ``size`` bytes of generated weights in files of at most 4 GiB (as shards usually are)."""
    shard = 4 * 2**30
    count = max(1, -(-size // shard))
    for i in range(count):
        write_weights(root / "model" / f"model-{i + 1:05d}-of-{count:05d}.safetensors", size // count, i)
    total = sum(p.stat().st_size for p in (root / "model").iterdir())
    return _spec(root, "big", "models:\n  - {name: m, path: model}\n"), total


def _measure(work: Path, spec: Path, keys: tuple[Path, Path], repeat: int) -> dict[str, tuple[float, float]]:
    """Seconds (best of ``repeat``) and peak RSS (MB, worst) of each operation, each run in its own child.

    Everything an operation wrote is removed before it runs again and at the end. The best of a few runs, not one:
    a quarter-size run of small files takes a few tenths of a second, where one scheduling hiccup on a shared
    2-core machine would otherwise read as non-linear growth.
    """
    python = sys.executable
    private, public = keys
    bundle, tar, out = work / "bundle", work / "b.tar", work / "unpacked"
    outputs = {"create": bundle, "verify": None, "pack": tar, "unpack": out}
    results = {}
    for op, args in (
        ("create", (spec, bundle, private)),
        ("verify", (bundle, work / "-", public)),
        ("pack", (bundle, tar, MTIME)),
        ("unpack", (tar, out, public)),
    ):
        if op == "unpack":
            # Unpack needs only the tar: the inputs (and the bundle, which shares their inodes) go first, so a 20 GB
            # run needs 2x its size of free disk, not 3x.
            shutil.rmtree(bundle, ignore_errors=True)
            shutil.rmtree(spec.parent, ignore_errors=True)
        runs = []
        for _ in range(repeat):
            _remove(outputs[op])
            os.sync()
            runs.append(_run([python, "-c", _CHILD, op, *map(str, args)]))
        results[op] = (min(t for t, _ in runs), max(rss for _, rss in runs))
    _remove(out)
    _remove(tar)
    _remove(bundle)
    os.sync()
    return results


def _remove(path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _report(
    label: str,
    unit: str,
    small: tuple[float, dict[str, tuple[float, float]]],
    big: tuple[float, dict[str, tuple[float, float]]],
) -> tuple[bool, float]:
    """Print per-unit costs at both sizes and their ratio; return (linear enough, peak RSS)."""
    (n_small, r_small), (n_big, r_big) = small, big
    ok, peak = True, 0.0
    print(f"{label}")
    print(f"  {'':8} {'quarter':>22} {'full':>22}   full/quarter per {unit} (target <= {LINEAR_LIMIT})")
    for op in OPS:
        (t1, m1), (t2, m2) = r_small[op], r_big[op]
        per1, per2 = t1 / n_small, t2 / n_big
        ratio = per2 / per1 if per1 > 0 else float("inf")
        ok &= ratio <= LINEAR_LIMIT
        peak = max(peak, m1, m2)
        print(
            f"  {op:8} {t1:8.2f} s {per1:8.3f} s/{unit} {t2:8.2f} s {per2:8.3f} s/{unit}   {ratio:5.2f}x"
            f"   RSS {m1:5.1f}/{m2:5.1f} MB"
        )
        results.row(
            "bench_scale",
            f"{op}, {label}",
            f"full: {t2:.2f} s ({per2:.3f} s per {unit}), peak RSS {m2:.0f} MB",
            f"quarter: {t1:.2f} s ({per1:.3f} s per {unit})",
            f"{ratio:.2f}x per {unit} (target <= {LINEAR_LIMIT}; RSS < {RSS_LIMIT_MB} MB)",
            ratio <= LINEAR_LIMIT and max(m1, m2) < RSS_LIMIT_MB,
        )
    return ok, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=int(os.environ.get("GAPSEAL_BENCH_SCALE_FILES", "10000")))
    parser.add_argument("--model-gb", type=float, default=float(os.environ.get("GAPSEAL_BENCH_SCALE_GB", "20")))
    parser.add_argument("--repeat", type=int, default=2, help="runs of each operation; the best is reported")
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    args = parser.parse_args(argv)

    from tests.bundles import make_keys

    with tempfile.TemporaryDirectory(prefix="gapseal-bench-scale-", dir=args.dir) as d:
        work = Path(d)
        kp = make_keys(work / "keys")
        keys = (kp.private_path, kp.public_path)
        subprocess.run([sys.executable, "-c", "import gapseal.bundler.create, gapseal.bundler.unpack"], check=True)

        files_results = []
        for count in (max(1, args.files // 4), args.files):
            spec, size = _many_files(work / f"files-{count}", count)
            files_results.append((count / 1000, _measure(work, spec, keys, args.repeat)))
        model_results = []
        for size in (int(args.model_gb * GB / 4), int(args.model_gb * GB)):
            spec, actual = _big_model(work / f"model-{size}", size)
            model_results.append((actual / GB, _measure(work, spec, keys, args.repeat)))

    ok_files, peak_files = _report(
        f"small files: {args.files // 4} and {args.files} files of 1-4 KiB", "1000 files", *files_results
    )
    ok_model, peak_model = _report(
        f"model: {model_results[0][0]:.2f} GB and {model_results[1][0]:.2f} GB of weights", "GB", *model_results
    )
    peak = max(peak_files, peak_model)
    print(f"peak RSS of any child: {peak:.1f} MB (limit {RSS_LIMIT_MB} MB; upper bounds, see bench_pack._run)")
    ok = ok_files and ok_model and peak < RSS_LIMIT_MB
    print("PASS" if ok else "BELOW TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
