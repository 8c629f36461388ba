"""Benchmark: peak RSS of ``verify`` on a bundle tar that carries 200 MB of unreferenced junk blobs.

Issue 8: memory of verify must not grow with junk or unreferenced content (keep digests, not bytes). Inputs (a
temporary directory removed at the end): the small test bundle (a safetensors model, docs, two build variants),
packed as is (the baseline) and with 200 junk blobs of 1 MiB each added under ``blobs/sha256/`` before packing (1 MiB
is the worst case: the largest size an older reader kept in memory). Each verify runs in its own child process and
its peak RSS comes from ``wait4``; the junk verify must fail (exit 1, the junk named) and stay under 100 MB.

Run: ``.venv/bin/python -m bench.bench_junk [--junk-mb 200]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import results

RSS_LIMIT_MB = 100
MIB = 1024 * 1024

_CHILD = r"""
import json, sys, time
from pathlib import Path
from gapseal.bundler.verify import verify_bundle
from gapseal.errors import VerificationError
from gapseal.signing.keys import load_public_key
key = load_public_key(Path(sys.argv[2]))
t0 = time.perf_counter()
try:
    verify_bundle(Path(sys.argv[1]), [key])
    outcome = "verified"
except VerificationError as e:
    outcome = e.message.splitlines()[0][:160]
print(json.dumps({"seconds": time.perf_counter() - t0, "outcome": outcome}))
"""


def _verify(tar: Path, pub: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, outcome) of one verify in a child process."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(tar), str(pub)], stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    out, _ = proc.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"verify of {tar} crashed")
    doc = json.loads(out)
    return doc["seconds"], usage.ru_maxrss / 1024, doc["outcome"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--junk-mb", type=int, default=200)
    opts = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gapseal.bundler.archive import pack_layout
    from tests.bundles import make_bundle, make_keys

    root = Path(tempfile.mkdtemp(prefix="gapseal-bench-junk-"))
    try:
        keys = make_keys(root / "keys")
        bundle = make_bundle(root / "made", keys).path
        pack_layout(bundle, root / "clean.tar", mtime=1767225600)
        for _ in range(opts.junk_mb):
            data = os.urandom(MIB)
            (bundle / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
        pack_layout(bundle, root / "junk.tar", mtime=1767225600)

        clean = _verify(root / "clean.tar", keys.public_path)
        junk = _verify(root / "junk.tar", keys.public_path)
        junk_mb = (root / "junk.tar").stat().st_size / 1e6
        print(f"\n{'verify of':40} {'tar MB':>7} {'seconds':>8} {'peak RSS MB':>12}  outcome")
        print(f"{'the bundle (baseline)':40} {(root / 'clean.tar').stat().st_size / 1e6:7.1f} {clean[0]:8.2f} ", end="")
        print(f"{clean[1]:12.0f}  {clean[2]}")
        label = f"the bundle + {opts.junk_mb} MiB of junk blobs"
        print(f"{label:40} {junk_mb:7.1f} {junk[0]:8.2f} ", end="")
        print(f"{junk[1]:12.0f}  {junk[2]}")
        growth = junk[1] - clean[1]
        print(
            f"\nRSS growth from junk: {growth:.0f} MB for {opts.junk_mb} MiB of junk (ratio {junk[1] / clean[1]:.2f})"
        )
        ok = clean[2] == "verified" and "unexpected file" in junk[2] and junk[1] < RSS_LIMIT_MB
        print(f"target: junk refused and peak RSS < {RSS_LIMIT_MB} MB: {'met' if ok else 'MISSED'}")
        results.row(
            "bench_junk",
            f"verify of a tar carrying {opts.junk_mb} MiB of junk beside the layout",
            f"refused ({junk[2].split(' not referenced')[0]}), peak RSS {junk[1]:.0f} MB",
            f"clean tar: {clean[2]}, peak RSS {clean[1]:.0f} MB",
            f"target: refused and < {RSS_LIMIT_MB} MB",
            ok,
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
