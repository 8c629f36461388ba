"""Benchmark: ``bundle pack`` against GNU ``tar cf`` on the same layout, in the same run.

Target (issue 2): pack at least 0.9x the speed of ``tar cf`` on the same directory, warm cache; peak RSS under 200 MB.
The layout is synthetic (three blobs of 768, 512 and 256 MiB by default, plus ``oci-layout`` and ``index.json``) in a
temporary directory that is removed at the end.

``tar cf`` writes into the page cache and returns; ``pack`` also fsyncs its output before renaming it into place
(an interrupted pack must never leave a tar that looks complete). Both are reported: ``tar cf`` alone, and
``tar cf`` followed by an fsync of its output (the like-for-like baseline). Each side runs in its own child process,
so peak RSS is the child's own (``wait4``), and times are the median of ``--runs`` runs.

Also timed, for the record: a split pack (``--part-size``), reading the tar back through the strict reader
(``read_layout_archive``: every byte hashed), and ``unpack`` against ``tar xf``.

Run: ``.venv/bin/python -m bench.bench_pack [--size-mib 1536] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import results

TARGET_RATIO = 0.9
RSS_LIMIT_MB = 200
MTIME = 1_700_000_000

_CHILD = r"""
import json, os, sys, time
from pathlib import Path
op, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
t0 = time.perf_counter()
if op == "pack":
    from gapseal.bundler.archive import pack_layout
    pack_layout(src, out, mtime=int(sys.argv[4]))
elif op == "split":
    from gapseal.bundler.archive import pack_layout
    pack_layout(src, out, mtime=int(sys.argv[4]), part_size=int(sys.argv[5]))
elif op == "read":
    from gapseal.bundler.inventory import read_layout_archive
    read_layout_archive(src)
elif op == "unpack":
    from gapseal.bundler.unpack import unpack_archive
    unpack_archive(src, out)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

_IMPORTS = "import gapseal.bundler.archive, gapseal.bundler.inventory, gapseal.bundler.unpack"


def _make_layout(root: Path, sizes_mib: list[int]) -> int:
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    chunk = os.urandom(4 * 1024 * 1024)
    digests = []
    total = 0
    for i, mib in enumerate(sizes_mib):
        h = hashlib.sha256()
        tmp = root / "blobs" / "sha256" / f"tmp{i}"
        with tmp.open("wb") as f:
            for j in range(mib // 4):
                block = (i * 131 + j).to_bytes(8, "big") + chunk[8:]  # no two 4 MiB blocks alike
                h.update(block)
                f.write(block)
        digest = h.hexdigest()
        tmp.rename(root / "blobs" / "sha256" / digest)
        digests.append(digest)
        total += (mib // 4) * 4 * 1024 * 1024
    index = {"schemaVersion": 2, "manifests": [{"digest": f"sha256:{d}"} for d in digests]}
    (root / "index.json").write_bytes(json.dumps(index).encode())
    return total


def _warm(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb", buffering=0) as f:
                while f.read(8 * 1024 * 1024):
                    pass


def _run(argv: list[str]) -> tuple[float, float]:
    """Run ``argv``; return (wall seconds, peak RSS in MB) of that child.

    ``wait4`` gives the child's own resource usage. Linux carries the spawning process's resident size across
    ``exec`` into ``ru_maxrss`` (here ~33 MB, this interpreter), so every figure is an upper bound: right for
    checking a limit, too high for a small C program like tar.
    """
    read_end, write_end = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_CLOSE, read_end)]
    t0 = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{argv[0]} failed with exit code {code}")
    if out.strip().startswith(b"{"):
        wall = json.loads(out)["seconds"]  # the child's own timing, without interpreter start-up
    return wall, usage.ru_maxrss / 1024


def _fsync_file(path: Path) -> float:
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def _clean(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    os.sync()


def _gbps(total: int, seconds: float) -> str:
    return f"{total / seconds / 1e9:.2f} GB/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1536, help="total blob size (split 1/2, 1/3, 1/6)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the layout (default: a temp dir)")
    args = parser.parse_args(argv)
    size = args.size_mib
    sizes = [size // 2, size // 3, size - size // 2 - size // 3]
    python = sys.executable

    with tempfile.TemporaryDirectory(prefix="gapseal-bench-pack-", dir=args.dir) as d:
        work = Path(d)
        layout = work / "layout"
        total = _make_layout(layout, sizes)
        os.sync()
        _warm(layout)
        subprocess.run([python, "-c", _IMPORTS], check=True)  # warm the bytecode cache
        tar_out, pack_out = work / "tar.tar", work / "pack.tar"
        members = ["blobs", "index.json", "oci-layout"]

        tar_t, tar_sync_t, pack_t, tar_rss, pack_rss = [], [], [], [], []
        for run in range(args.runs):
            t, rss = _run(["tar", "cf", str(tar_out), "-C", str(layout), *members])
            tar_t.append(t)
            tar_sync_t.append(t + _fsync_file(tar_out))
            tar_rss.append(rss)
            _clean(tar_out)
            t, rss = _run([python, "-c", _CHILD, "pack", str(layout), str(pack_out), str(MTIME)])
            pack_t.append(t)
            pack_rss.append(rss)
            if run < args.runs - 1:
                _clean(pack_out)  # the last pack stays for the read and unpack timings

        split_dir = work / "split"
        split_dir.mkdir()
        split_t, split_rss = _run(
            [python, "-c", _CHILD, "split", str(layout), str(split_dir / "b.tar"), str(MTIME), str(512 * 1024**2)]
        )
        _clean(split_dir)
        read_t, read_rss = _run([python, "-c", _CHILD, "read", str(pack_out), "-"])
        unpack_t, unpack_rss = _run([python, "-c", _CHILD, "unpack", str(pack_out), str(work / "unpacked")])
        _clean(work / "unpacked")
        (work / "x").mkdir()
        tarx_t, _ = _run(["tar", "xf", str(pack_out), "-C", str(work / "x")])

    tar_m, tar_sync_m, pack_m = (statistics.median(v) for v in (tar_t, tar_sync_t, pack_t))
    ratio = tar_m / pack_m
    ratio_sync = tar_sync_m / pack_m
    peak = max(pack_rss + [split_rss, read_rss, unpack_rss])
    print(f"layout: {len(sizes)} blobs, {total / 2**20:.0f} MiB; median of {args.runs} runs, warm cache")
    print(f"  tar cf                 {tar_m:7.3f} s  {_gbps(total, tar_m)}   peak RSS {max(tar_rss):6.1f} MB")
    print(f"  tar cf + fsync         {tar_sync_m:7.3f} s  {_gbps(total, tar_sync_m)}")
    print(f"  gapseal pack (fsync)   {pack_m:7.3f} s  {_gbps(total, pack_m)}   peak RSS {max(pack_rss):6.1f} MB")
    print(f"  pack speed / tar cf speed:          {ratio:.2f}x  (target >= {TARGET_RATIO})")
    print(f"  pack speed / (tar cf + fsync):      {ratio_sync:.2f}x")
    print(f"  split pack, 512 MiB parts (hashes)  {split_t:7.3f} s  {_gbps(total, split_t)}  RSS {split_rss:.1f} MB")
    print(f"  read tar (strict, every byte hashed){read_t:7.3f} s  {_gbps(total, read_t)}  RSS {read_rss:.1f} MB")
    print(f"  unpack (hash + fsync)               {unpack_t:7.3f} s  {_gbps(total, unpack_t)}  RSS {unpack_rss:.1f} MB")
    print(f"  tar xf (no hash, no fsync)          {tarx_t:7.3f} s  {_gbps(total, tarx_t)}")
    print(f"  peak RSS of gapseal children: {peak:.1f} MB (limit {RSS_LIMIT_MB} MB; upper bounds, see _run)")
    ok = ratio >= TARGET_RATIO and peak < RSS_LIMIT_MB
    results.row(
        "bench_pack",
        f"pack a {total / 2**20:.0f} MiB layout into one tar, fsync'd",
        f"{pack_m:.2f} s ({_gbps(total, pack_m)})",
        f"tar cf {tar_m:.2f} s; tar cf + fsync {tar_sync_m:.2f} s",
        f"{ratio:.2f}x of tar cf (target >= {TARGET_RATIO}); {ratio_sync:.2f}x of tar cf + fsync",
        ok,
    )
    print("PASS" if ok else "BELOW TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
