"""Benchmark: one host's full audit (collect + evaluate + write + sign), against collection alone as the baseline.

Target (issue 5): one host's full audit under 2 s. The host is this machine, audited in-process the way
``gapseal audit run`` without ``-i`` does; collection sends no packet (route lookups and UDP ``connect()`` only).
Also timed: ``evidence verify`` of the written directory.

Run: ``.venv/bin/python -m bench.bench_audit [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench import results
from gapseal.audit.collect import collect_facts
from gapseal.audit.run import AuditRunRequest, run_audit
from gapseal.audit.verify_evidence import verify_evidence
from gapseal.signing.keys import SigningKey

TARGET_SECONDS = 2.0


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    key = SigningKey.generate()

    # warm-up: imports, the policy set, the regopy interpreter
    with tempfile.TemporaryDirectory() as d:
        run_audit(AuditRunRequest(out_dir=Path(d) / "warm", key=key))

    baseline: list[float] = []
    for _ in range(args.runs):
        t = time.perf_counter()
        collect_facts()
        baseline.append(time.perf_counter() - t)

    phases: dict[str, list[float]] = {
        "load_policies": [],
        "collect": [],
        "evaluate": [],
        "write_and_sign": [],
        "total": [],
    }
    verify: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.runs):
            out = Path(d) / f"ev{i}"
            outcome = run_audit(AuditRunRequest(out_dir=out, key=key))
            for k in phases:
                phases[k].append(outcome.timings[k])
            t = time.perf_counter()
            verify_evidence(out, [key.public])
            verify.append(time.perf_counter() - t)
        hosts_rules = f"{outcome.results.summary.hosts} host, {outcome.results.summary.rules} rules"

    total = _median(phases["total"])
    base = _median(baseline)
    print(f"audit of one host ({hosts_rules}), median of {args.runs} runs after one warm-up:")
    print(f"  baseline  collect_facts alone          {base:7.3f} s")
    for k in ("load_policies", "collect", "evaluate", "write_and_sign"):
        print(f"  phase     {k:<30} {_median(phases[k]):7.3f} s")
    print(f"  gapseal   audit run (all phases)       {total:7.3f} s  ({total / base:4.2f}x the baseline)")
    print(f"  gapseal   evidence verify              {_median(verify):7.3f} s")
    verdict = "MET" if total < TARGET_SECONDS else "MISSED"
    results.row(
        "bench_audit",
        f"audit run of one host ({hosts_rules}): collect, evaluate, sign",
        f"{total:.2f} s; evidence verify {_median(verify):.2f} s",
        f"collect alone {base:.2f} s",
        f"target < {TARGET_SECONDS:.0f} s",
        total < TARGET_SECONDS,
    )
    print(f"  target    < {TARGET_SECONDS:.1f} s for one host: {verdict}")
    return 0 if total < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
