"""Benchmark: the first install's file data path against ``rsync -e ssh`` + ``sha256sum`` of the same files.

Target (issue 12): the data path of a first install onto one host at least 0.5 times the speed of copying the same
files to the same host with ``rsync -e ssh`` and then hashing them there with ``sha256sum``; seconds per GiB printed.

gapseal's side is ``install --tags models`` of a signed bundle of generated weights (``--size-mib``, default 1024, in
four files) into a fresh ``gapseal_root`` on one namespace host (tests/hosts/netns.py, index 45): the weights cross
ssh (sftp over the play's ControlMaster) into staging, are hashed on the host and renamed into place. The install
also pays for Ansible itself (ansible-runner start, the preflight and hardware roles, the module calls), which is not
the data path, so the same install is then run again (idempotent: every file is present, nothing is sent or hashed)
and the data path is the difference. Both the whole install and the difference are printed.

The baseline is ``rsync -a -e ssh`` of the model directory to a fresh directory on the same host, with the cipher
gapseal's ansible.cfg prefers (AES-GCM), then ``sha256sum`` of every file over ssh: what an operator would do by hand,
connection set-up included (a few milliseconds here). Both sides write to the same disk (the namespace host shares
this machine's filesystem); the sources are read once before each run (warm cache); destinations are removed and the
disk synced between runs; the sides alternate and the median of the back-to-back ratios is reported.

Run: ``.venv/bin/python -m bench.bench_datapath [--size-mib 1024] [--runs 3]`` (root: it creates a network namespace;
needs rsync).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import results
from bench.bench_pack import _warm
from bench.bench_unpack import make_model_bundle

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30
TARGET_RATIO = 0.5
HOST_INDEX = 45
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"  # as playbooks/ansible.cfg


def _baseline(host, src: Path, dest: Path) -> float:  # type: ignore[no-untyped-def]
    """rsync the model directory to ``dest`` on the host, then sha256sum every file there; return seconds."""
    ssh = ["ssh", *host.ssh_options(), "-o", f"Ciphers={CIPHERS}"]
    files = sorted(p.name for p in src.iterdir())
    dest.parent.mkdir(parents=True, exist_ok=True)  # rsync makes only the last component
    t0 = time.perf_counter()
    subprocess.run(
        ["rsync", "-a", "-e", " ".join(ssh), f"{src}/", f"root@{host.address}:{dest}/"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    proc = host.ssh(["sha256sum", "--", *(str(dest / f) for f in files)], timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or len(proc.stdout.splitlines()) != len(files):
        raise RuntimeError(f"sha256sum on the host failed: {proc.stderr.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=int(os.environ.get("GAPSEAL_BENCH_DATAPATH_MIB", "1024")))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    args = parser.parse_args(argv)
    if shutil.which("rsync") is None:
        print("rsync is missing: run `make deps` first", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    from gapseal.installer.install import InstallOptions, install_bundle
    from gapseal.signing.keys import load_public_key
    from tests.hosts.netns import HostFleet

    work = Path(tempfile.mkdtemp(prefix="gapseal-bench-datapath-", dir=args.dir))
    os.environ["GAPSEAL_STATE_DIR"] = str(work / "state")
    first: list[float] = []
    rerun: list[float] = []
    base: list[float] = []
    try:
        bundle, public_path = make_model_bundle(work, args.size_mib, files=4)
        public = load_public_key(public_path)
        src = work / "in" / "model"
        weights = sum(p.stat().st_size for p in src.iterdir())
        with HostFleet(work / "hosts") as fleet:
            host = fleet.add(HOST_INDEX)
            for run in range(args.runs):
                root = work / "roots" / f"r{run}"
                inv = work / f"inv{run}.yml"
                hv = {host.name: {"gapseal_root": str(root), "egress_lockdown": False}}
                inv.write_text(yaml.safe_dump(fleet.inventory([host], host_vars=hv)))
                options = InstallOptions(tags=("models",))
                for side in ("gapseal", "rsync"):
                    os.sync()
                    _warm(bundle)
                    _warm(src)
                    if side == "gapseal":
                        t0 = time.perf_counter()
                        report = install_bundle(bundle, inv, [public], options=options)
                        t1 = time.perf_counter()
                        again = install_bundle(bundle, inv, [public], options=options)
                        t2 = time.perf_counter()
                        if not (report.ok and again.ok) or any(h.changed for h in again.hosts):
                            print("an install failed or the rerun changed something; no numbers", file=sys.stderr)
                            return 1
                        first.append(t1 - t0)
                        rerun.append(t2 - t1)
                        shutil.rmtree(root)
                    else:
                        dest = work / "rsync" / f"r{run}"
                        base.append(_baseline(host, src, dest))
                        shutil.rmtree(dest)
        load = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    net = [f - r for f, r in zip(first, rerun, strict=True)]
    gib = weights / GIB
    ratio = statistics.median(b / n for b, n in zip(base, net, strict=True))  # speed ratio = time(baseline)/time(ours)
    whole = statistics.median(b / f for b, f in zip(base, first, strict=True))
    med = statistics.median
    print(f"weights: {weights / 2**20:.0f} MiB in 4 files, one namespace host over ssh; median of {args.runs} runs")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  baseline: rsync -e ssh + sha256sum on the host   {med(base):6.2f} s  {med(base) / gib:5.2f} s/GiB")
    print(f"  gapseal install --tags models, first run          {med(first):6.2f} s  {med(first) / gib:5.2f} s/GiB")
    print(f"  gapseal same install again (nothing to send)      {med(rerun):6.2f} s")
    print(f"  gapseal data path (first - rerun)                 {med(net):6.2f} s  {med(net) / gib:5.2f} s/GiB")
    print(f"  ratio data path speed / baseline speed: {ratio:.2f}x   target >= {TARGET_RATIO}")
    print(f"  ratio whole first install / baseline:   {whole:.2f}x   (Ansible's own start-up included; no target)")
    runs = ", ".join(f"{b:.2f}/{f:.2f}/{r:.2f}" for b, f, r in zip(base, first, rerun, strict=True))
    print(f"  every run (rsync+sha256sum / first install / rerun): {runs} s")
    ok = ratio >= TARGET_RATIO
    results.row(
        "bench_datapath",
        f"first install's data path, {weights / GIB:.1f} GiB of weights to one host (install minus its rerun)",
        f"{med(net):.2f} s ({med(net) / gib:.2f} s/GiB); whole install {med(first):.2f} s",
        f"rsync -e ssh + sha256sum {med(base):.2f} s ({med(base) / gib:.2f} s/GiB)",
        f"{ratio:.2f}x (target >= {TARGET_RATIO})",
        ok,
    )
    print("PASS" if ok else "BELOW TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
