"""Benchmark: ``gapseal install`` onto 1 namespace host and onto 4, in the same run; ratio and time per GiB.

Input: a bundle of the real MiniLM weights (examples/models/minilm, 90.9 MB) and a small CPU build, signed here.
Hosts: network namespaces with their own sshd (tests/hosts/netns.py, addresses 10.231.40-44.0/24), each installing
into its own fresh ``gapseal_root`` (a first install: every byte crosses ssh and is hashed on the host), egress
lockdown skipped (it has its own test). The same install is then run again on both sets (idempotent: nothing to send).

Targets (issue 4): 4 hosts take at most 1.5x the wall time of 1 host. Also printed: the 1-host first-install time per
GiB of weights, and both idempotent reruns. The machine has 2 cores shared by everything that runs; the load
average is printed with the numbers. Unlike a real fleet, the 4 namespace hosts share those 2 cores with the controller,
so every host's own work (sshd, the module's Python, hashing on the host) adds to the wall time here.

Run: ``.venv/bin/python -m bench.bench_install`` (root: it creates network namespaces).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from gapseal.signing.keys import VerifyingKey

REPO = Path(__file__).resolve().parents[1]
MINILM = REPO / "examples" / "models" / "minilm"
GIB = 1024**3
TARGET_RATIO = 1.5


def _bundle(work: Path) -> tuple[Path, VerifyingKey]:
    from gapseal.bundler.create import create_bundle
    from gapseal.signing.keys import SigningKey

    src = work / "src"
    shutil.copytree(MINILM, src / "models" / "minilm")
    (src / "builds" / "cpu" / "bin").mkdir(parents=True)
    (src / "builds" / "cpu" / "bin" / "serve").write_text("#!/bin/sh\nexec sleep 3600\n")
    spec = {
        "apiVersion": "gapseal/v1",
        "kind": "Bundle",
        "metadata": {"name": "bench-install", "version": "1.0.0"},
        "models": [{"name": "minilm", "path": "models/minilm"}],
        "builds": [{"name": "server", "variants": [{"backend": "cpu", "arch": "amd64", "path": "builds/cpu"}]}],
    }
    (src / "spec.yaml").write_text(yaml.safe_dump(spec))
    key = SigningKey.generate()
    create_bundle(src / "spec.yaml", key, work / "bundle")
    return work / "bundle", key.public


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="Work directory parent (default: a temp dir).")
    opts = parser.parse_args(argv)
    if not (MINILM / "model.safetensors").is_file():
        print("examples/models/minilm is missing: run `make model` first", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    from gapseal.installer.install import install_bundle
    from tests.hosts.netns import HostFleet

    work = Path(tempfile.mkdtemp(prefix="gapseal-bench-install-", dir=opts.dir))
    os.environ["GAPSEAL_STATE_DIR"] = str(work / "state")
    try:
        bundle, public = _bundle(work)
        from gapseal.bundler.verify import verify_bundle

        weights = sum(f.size for m in verify_bundle(bundle, [public]).descriptor.models for f in m.files)
        with HostFleet(work / "hosts") as fleet:
            one = [fleet.add(40)]
            four = [fleet.add(i) for i in (41, 42, 43, 44)]

            def inventory(hosts: list, name: str) -> Path:  # type: ignore[type-arg]
                hv = {h.name: {"gapseal_root": str(work / "roots" / h.name), "egress_lockdown": False} for h in hosts}
                path = work / f"{name}.yml"
                path.write_text(yaml.safe_dump(fleet.inventory(hosts, host_vars=hv)))
                return path

            def timed(inv: Path) -> tuple[float, bool, int]:  # seconds, every host ok, tasks changed
                t0 = time.perf_counter()
                report = install_bundle(bundle, inv, [public])
                return time.perf_counter() - t0, report.ok, sum(h.changed for h in report.hosts)

            inv1, inv4 = inventory(one, "one"), inventory(four, "four")
            t1, ok1, _ = timed(inv1)
            t4, ok4, _ = timed(inv4)
            r1, rok1, ch1 = timed(inv1)
            r4, rok4, ch4 = timed(inv4)
        load = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not (ok1 and ok4 and rok1 and rok4):
        print("an install failed; no numbers", file=sys.stderr)
        return 1
    ratio = t4 / t1
    print(f"weights: {weights / 1e6:.1f} MB (MiniLM), hosts: namespace hosts over ssh, load average {load[0]:.1f}")
    print(f"first install, 1 host : {t1:6.1f} s  ({t1 / (weights / GIB):.1f} s per GiB of weights)")
    print(f"first install, 4 hosts: {t4:6.1f} s  ({t4 / (4 * weights / GIB):.1f} s per GiB of weights delivered)")
    print(
        f"ratio 4 hosts / 1 host: {ratio:.2f}x  (target <= {TARGET_RATIO}x)  "
        + ("MET" if ratio <= TARGET_RATIO else "MISSED")
    )
    print(f"rerun (idempotent)    : 1 host {r1:.1f} s, 4 hosts {r4:.1f} s, changed tasks {ch1} / {ch4}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
