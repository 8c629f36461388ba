"""Run every benchmark (``python -m bench``) or the named ones (``python -m bench bundle pack``).

Each benchmark is its own module ``bench/bench_<name>.py`` with a ``main`` and runs in a child process, so one
benchmark's page cache and memory do not colour the next one's figures beyond what the machine itself does.
``--readme README.md`` (what ``make bench`` passes) rewrites the README's performance table from this run's rows
(see ``bench/results.py``); it needs the whole set, so a table never mixes runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import results


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str]) -> int:
    """Run the benchmarks named in ``argv`` (all when empty); return 1 if any missed its target or failed."""
    here = Path(__file__).resolve().parent
    available = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(available)}")
    parser.add_argument("--readme", type=Path, help="rewrite this README's performance table from the run")
    args = parser.parse_args(argv)
    chosen = args.names or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    if args.readme is not None and args.names:
        print("--readme rewrites the whole table: run every benchmark (give no names)", file=sys.stderr)
        return 2
    if args.readme is not None:
        try:
            results.check_readme(args.readme)  # before an hour of benchmarks, not after
        except (OSError, ValueError) as e:
            print(f"cannot rewrite the table: {e}", file=sys.stderr)
            return 2
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = _load()
    failed = []
    with tempfile.TemporaryDirectory(prefix="gapseal-bench-results-") as d:
        rows_file = Path(d) / "rows.jsonl"
        env = {**os.environ, results.ENV: str(rows_file)}
        for name in chosen:
            print(f"\n===== bench_{name} =====", flush=True)
            command = [sys.executable, "-m", f"bench.bench_{name}"]
            result = subprocess.run(command, cwd=here.parent, env=env, check=False)
            if result.returncode != 0:
                failed.append(name)
        rows = results.read(rows_file)
    print(f"\nbenchmarks: {len(chosen) - len(failed)} met their targets, {len(failed)} did not: {', '.join(failed)}")
    if args.readme is not None:
        ran = {r.bench for r in rows}
        broken = [name for name in chosen if f"bench_{name}" not in ran]  # no row at all: it did not run through
        generated = results.table(
            rows, date=date, machine=results.machine(), load_start=load_start, load_end=_load(), failed=broken
        )
        results.rewrite_readme(args.readme, generated)
        print(f"{args.readme}: performance table rewritten from this run ({len(rows)} rows)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
