"""Run every benchmark (``python -m bench``) or the named ones (``python -m bench bundle pack``).

Each benchmark is its own module ``bench/bench_<name>.py`` with a ``main`` and runs in a child process, so one
benchmark's page cache and memory do not colour the next one's figures beyond what the machine itself does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run the benchmarks named in ``argv`` (all when empty); return 1 if any missed its target or failed."""
    here = Path(__file__).resolve().parent
    available = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    chosen = argv or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n===== bench_{name} =====", flush=True)
        result = subprocess.run([sys.executable, "-m", f"bench.bench_{name}"], cwd=here.parent, check=False)
        if result.returncode != 0:
            failed.append(name)
    print(f"\nbenchmarks: {len(chosen) - len(failed)} met their targets, {len(failed)} did not: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
