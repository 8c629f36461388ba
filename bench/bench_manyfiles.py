"""Benchmark: a bundle of 10,000 small files, ``create`` and ``verify`` against model_signing on the same files.

Issue 8 asks that a bundle of 10,000 files works end to end (before, 6,000 made a manifest over verify's limit) and
that its create and verify times are measured against model_signing in the same run. Inputs (a temporary directory
removed at the end): 10,000 text files of ~14 bytes in 10 subdirectories.

Each operation runs in its own child process (peak RSS from ``wait4``), ``--runs`` times, best time reported:
- ``model_signing`` sign and verify (elliptic-curve key, sha256 file serialization) of the directory;
- ``gapseal create`` as the CLI runs it (with the CycloneDX SBOM) and without the SBOM, and ``gapseal verify``.

Targets: verify at least as fast as model_signing verify (>= 1.0); create (with the SBOM, as shipped) within 5x of
model_signing sign; peak RSS under 300 MB. The figures are for files this small: per-file work, not hashing, is
what is measured.

Run: ``.venv/bin/python -m bench.bench_manyfiles [--files 10000] [--runs 2]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench import results
from bench.bench_bundle import _child

RSS_LIMIT_MB = 300


def _best(runs: int, fn: object) -> tuple[float, float]:
    results = [fn() for _ in range(runs)]  # type: ignore[operator]
    return min(r[0] for r in results), max(r[1] for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2)
    opts = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="gapseal-bench-manyfiles-"))
    try:
        docs = root / "in" / "docs"
        for i in range(opts.files):
            d = docs / f"d{i // 1000:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"doc-{i:05d}.txt").write_text(f"document {i}\n")
        spec = root / "in" / "bundle.yaml"
        spec.write_text(
            "apiVersion: gapseal/v1\nkind: Bundle\n"
            'metadata: {name: manyfiles, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
            "files:\n  - {name: docs, path: docs}\n"
        )
        from gapseal.signing.keys import generate_key_pair

        key, pub = generate_key_pair(root / "bench", None)

        def fresh(name: str) -> Path:
            shutil.rmtree(root / name, ignore_errors=True)
            return root / name

        rows: dict[str, tuple[float, float]] = {}
        sig = root / "docs.sig.ms"
        rows["model_signing sign"] = _best(opts.runs, lambda: _child("ms-sign", docs, key, sig))
        rows["model_signing verify"] = _best(opts.runs, lambda: _child("ms-verify", docs, pub, sig))
        rows["gapseal create (with SBOM, as shipped)"] = _best(
            opts.runs, lambda: _child("create", spec, key, fresh("b"))
        )
        rows["gapseal create (no SBOM)"] = _best(opts.runs, lambda: _child("create-nosbom", spec, key, fresh("b2")))
        rows["gapseal verify"] = _best(opts.runs, lambda: _child("verify", root / "b", pub))

        print(f"\n{opts.files} files\n{'operation':42} {'seconds':>8} {'files/s':>9} {'peak RSS MB':>12}")
        for label, (s, rss) in rows.items():
            print(f"{label:42} {s:8.2f} {opts.files / s:9.0f} {rss:12.0f}")

        def ratio(ours: str, base: str) -> float:
            return rows[base][0] / rows[ours][0]

        checks = [
            ("verify vs model_signing verify", ratio("gapseal verify", "model_signing verify"), 1.0),
            (
                "create (SBOM) vs model_signing sign",
                ratio("gapseal create (with SBOM, as shipped)", "model_signing sign"),
                0.2,
            ),
            ("create (no SBOM) vs model_signing sign", ratio("gapseal create (no SBOM)", "model_signing sign"), 0.0),
        ]
        ok = True
        print(f"\n{'comparison':44} {'ratio':>6} {'target':>7}  result")
        for label, value, target in checks:
            met = value >= target
            ok &= met
            print(f"{label:44} {value:6.2f} {'>= ' + str(target):>7}  {'met' if met else 'MISSED'}")
        for label, ours, base, target in (
            ("verify", "gapseal verify", "model_signing verify", 1.0),
            ("create with the SBOM", "gapseal create (with SBOM, as shipped)", "model_signing sign", 0.2),
        ):
            results.row(
                "bench_manyfiles",
                f"{label}, {opts.files:,} small files",
                f"{rows[ours][0]:.2f} s",
                f"{base} {rows[base][0]:.2f} s",
                f"{ratio(ours, base):.2f}x (target >= {target})",
                ratio(ours, base) >= target,
            )
        peak = max(rss for _, rss in rows.values())
        print(f"{'peak RSS of any operation (MB)':44} {peak:6.0f} {'< ' + str(RSS_LIMIT_MB):>7}  ", end="")
        print("met" if peak < RSS_LIMIT_MB else "MISSED")
        ok &= peak < RSS_LIMIT_MB
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
