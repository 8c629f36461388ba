"""Benchmark: ``registry load`` and ``bundle pull`` of a 512 MiB bundle against ``skopeo copy`` of the same content.

Inputs (synthetic, in a temporary directory removed at the end): a bundle of one model, four 128 MiB weight files of
random bytes plus a config (a files component), created and signed with a fresh key.

Baselines, in the same run, on the same loopback registry software (Debian's docker-registry, a fresh storage
directory for every copy so that neither side finds blobs the other sent):
- load: ``skopeo copy oci:BUNDLE:gapseal-bundle docker://REGISTRY/...`` (uploads the same manifest and blobs);
  gapseal: ``gapseal registry load BUNDLE --key`` (verifies first, pushes, reads back what it pushed).
- pull: ``skopeo copy docker://REGISTRY/gapseal/NAME:VERSION oci:OUT:x`` (digest-checked, not signature-checked);
  gapseal: ``gapseal bundle pull REF --key`` (signature first, every blob hashed as it is written and fsync'd, then
  verified); also shown against skopeo followed by an fsync of every file it wrote (the same durability).
Second baseline (issue 12), when oras-py is installed (the ``test`` extra): oras-py's own ``push`` of the same blob
files as an artifact, and its ``pull`` of them.
Both sides run as the commands an operator types (a process each); each pair runs ``--rounds`` times in alternating
order and the best time of each side is compared. Target (issue 12): gapseal at least 1.0 times skopeo's speed.

Also: peak RSS of ``gapseal bundle pull`` against a hostile registry that answers the manifest with 300 MB
(target < 100 MB: the manifest is capped while it is read).

``--library`` times gapseal's side as library calls (no interpreter start, no imports), to show what the CLI's start
costs; the target is judged on whichever was run, and the CLI is what operators run.

Run: ``.venv/bin/python -m bench.bench_registry [--mib 512] [--rounds 3] [--library]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import results
from gapseal.bundler.create import create_bundle
from gapseal.bundler.registry import load_bundle, pull_bundle
from gapseal.bundler.rollback import RollbackState
from gapseal.signing.keys import generate_key_pair, load_private_key, load_public_key
from tests.registry.server import LoopbackRegistry

MIB = 1024 * 1024
FILES = 4
TARGET = 1.0
RSS_TARGET_MB = 100.0
HOSTILE_MANIFEST = 300 * 1000 * 1000


ORAS_PUSH = (
    "import sys, oras.client\n"
    "c = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)\n"
    "c.push(target=sys.argv[2], files=sys.argv[3:], disable_path_validation=True, quiet=True)\n"
)
ORAS_PULL = (
    "import sys, oras.client\n"
    "c = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)\n"
    "c.pull(target=sys.argv[2], outdir=sys.argv[3])\n"
)


def gapseal_cli() -> str:
    return str(Path(sys.executable).parent / "gapseal")


Timing = tuple[float, float]
"""(wall seconds, CPU seconds of the command: user + system, its own threads and children)."""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str]) -> Timing:
    cpu = _children_cpu()  # the registry is reaped only at its stop, outside this window: not counted
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, check=False)  # noqa: S603 - argument list
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} … failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return took, _children_cpu() - cpu


def in_process(fn: Callable[[], object]) -> Timing:
    """Time a library call in this process (its CPU: every thread of this process)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return took, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def make_bundle(root: Path, mib: int) -> tuple[Path, Path]:
    inputs = root / "in"
    (inputs / "model").mkdir(parents=True)
    per_file = mib * MIB // FILES
    for i in range(FILES):
        with (inputs / "model" / f"weights-{i:02d}.bin").open("wb") as f:
            left = per_file
            while left:
                n = min(left, 16 * MIB)
                f.write(os.urandom(n))
                left -= n
    (inputs / "model" / "config.json").write_text('{"model_type": "bench"}\n')
    (inputs / "bundle.yaml").write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: bench, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        "files:\n  - {name: weights, path: model}\n"
    )
    (root / "keys").mkdir()
    generate_key_pair(root / "keys" / "bench", None)
    key = load_private_key(root / "keys" / "bench.key", None)
    created = create_bundle(inputs / "bundle.yaml", key, root / "bundle", link=False)
    shutil.rmtree(inputs)
    return created.path, root / "keys" / "bench.pub"


def fresh_registry(root: Path, name: str) -> LoopbackRegistry:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    return LoopbackRegistry(path)


def compare(
    label: str,
    rounds: int,
    ours: Callable[[], Timing],
    theirs: Callable[[], Timing],
    size: int,
    baseline: str = "skopeo copy",
    judged: bool = True,
) -> bool:
    mine: list[Timing] = []
    base: list[Timing] = []
    for r in range(rounds):
        pair = [(mine, ours), (base, theirs)]
        for sink, fn in pair if r % 2 == 0 else reversed(pair):
            sink.append(fn())
    (best_mine, cpu_mine), (best_base, cpu_base) = min(mine), min(base)
    ratio = best_base / best_mine
    gb = size / 1e9
    print(f"{label}   (load average {os.getloadavg()[0]:.2f})")
    for who, best, cpu, runs in ((baseline, best_base, cpu_base, base), ("gapseal", best_mine, cpu_mine, mine)):
        walls = [round(t, 2) for t, _ in runs]
        print(f"  {who:12} : best {best:6.2f} s  {gb / best:5.2f} GB/s  cpu {cpu:5.2f} s   runs {walls}")
    ok = ratio >= TARGET
    verdict = ("met" if ok else "MISSED") if judged else "informational, not judged"
    print(f"  ratio gapseal/{baseline.split()[0]} speed = {ratio:.2f}   target >= {TARGET:.1f}: {verdict}")
    results.row(
        "bench_registry",
        f"{label}, {gb:.2f} GB, best of {rounds}",
        f"{best_mine:.2f} s ({gb / best_mine:.2f} GB/s)",
        f"{baseline} {best_base:.2f} s",
        f"{ratio:.2f}x" + (f" (target >= {TARGET:.1f})" if judged else " (informational)"),
        ok if judged else None,
    )
    return ok


class _HugeManifest(BaseHTTPRequestHandler):
    """A hostile registry: /v2/ answers, every manifest is 300 MB of JSON-looking bytes (declared or not)."""

    protocol_version = "HTTP/1.1"
    declare_length = True
    absent = False
    """Answer every manifest with a small 404 instead (the baseline: the same command, no big answer)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        if self.absent:
            self.send_response(404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        if self.declare_length:
            self.send_header("Content-Length", str(HOSTILE_MANIFEST))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b'{"schemaVersion":2,' + b" " * (MIB - 20) + b"\n"
        sent = 0
        try:
            while sent < HOSTILE_MANIFEST:
                if self.declare_length:
                    self.wfile.write(block)
                else:
                    self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                sent += len(block)
        except OSError:
            return


def hostile_manifest_rss(root: Path, *, declare_length: bool, absent: bool = False) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of a ``bundle pull`` child process against the 300 MB manifest (or a 404).

    Against a 404 (``absent``) the command imports everything a pull imports, asks for the manifest once and stops:
    its time is the CLI's start-up, what a small pull cannot go below.
    """
    handler = type("H", (_HugeManifest,), {"declare_length": declare_length, "absent": absent})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ref = f"127.0.0.1:{server.server_address[1]}/gapseal/bench:1.0.0"
        out = root / f"hostile-{declare_length}-{absent}"
        # A small launcher runs the CLI and reports its child's peak RSS: Linux carries ru_maxrss across exec, so
        # measuring a process forked straight from this (large) one would report this one's size.
        code = (
            "import resource, subprocess, sys, time\n"
            "start = time.perf_counter()\n"
            "rc = subprocess.run(sys.argv[1:], capture_output=True).returncode\n"
            "took = time.perf_counter() - start\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc, took)\n"
        )
        cmd = [gapseal_cli(), "bundle", "pull", ref, "--insecure", "--out", str(out), "-q"]
        proc = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, check=False, timeout=120)  # noqa: S603
        rss_kb, rc, took = proc.stdout.split()[-3:]
        if rc != b"1" or out.exists():
            raise SystemExit(f"the hostile manifest was not refused: {proc.stdout!r} {proc.stderr[-500:]!r}")
        return int(rss_kb) / 1024, float(took)
    finally:
        server.shutdown()
        server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512, help="bundle size in MiB (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument(
        "--library",
        action="store_true",
        help="time gapseal as library calls in this process (no interpreter start or imports; informational)",
    )
    args = parser.parse_args()
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        print("skopeo is not installed: run scripts/system-deps.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="gapseal-bench-registry-") as tmp:
        root = Path(tmp)
        state = root / "state"
        bundle, pub = make_bundle(root, args.mib)
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        print(f"bundle: {size:,} bytes ({FILES} weight files), load average {os.getloadavg()[0]:.2f}")

        key = load_public_key(pub)

        def load_ours() -> Timing:
            reg = fresh_registry(root, "reg-ours")
            try:
                if args.library:
                    rollback = RollbackState(state / "lib-load.json")
                    return in_process(lambda: load_bundle(bundle, [key], reg.host, insecure=True, rollback=rollback))
                cmd = [gapseal_cli(), "registry", "load", str(bundle), "--registry", reg.host, "--insecure"]
                return run([*cmd, "--key", str(pub), "--state-file", str(state / "load.json"), "-q"])
            finally:
                reg.stop()

        def load_skopeo() -> Timing:
            reg = fresh_registry(root, "reg-skopeo")
            try:
                return run(
                    [skopeo, "copy", "--quiet", "--dest-tls-verify=false", f"oci:{bundle}:gapseal-bundle",
                     f"docker://{reg.host}/gapseal/bench:1.0.0"]
                )  # fmt: skip
            finally:
                reg.stop()

        ok = compare("registry load (verify + push + read back) vs skopeo copy oci: -> docker://", args.rounds,
                     load_ours, load_skopeo, size)  # fmt: skip
        blob_files = sorted(str(p) for p in (bundle / "blobs" / "sha256").iterdir())
        oras = importlib.util.find_spec("oras") is not None

        def load_oras() -> Timing:
            reg = fresh_registry(root, "reg-oras")
            try:
                return run([sys.executable, "-c", ORAS_PUSH, reg.host, f"{reg.host}/oras/bench:1.0.0", *blob_files])
            finally:
                reg.stop()

        if oras:
            ok &= compare("registry load vs oras-py push of the same blobs", args.rounds, load_ours, load_oras, size,
                          baseline="oras-py push")  # fmt: skip
        else:
            print("oras-py is not installed (pip install -e .[test]): its baseline is skipped")

        reg = fresh_registry(root, "reg-pull")
        try:
            run([gapseal_cli(), "registry", "load", str(bundle), "--registry", reg.host, "--insecure", "--key",
                 str(pub), "--state-file", str(state / "seed.json"), "-q"])  # fmt: skip
            ref = f"{reg.host}/gapseal/bench:1.0.0"

            def pull_ours() -> Timing:
                out = root / "pulled"
                shutil.rmtree(out, ignore_errors=True)
                if args.library:
                    rollback = RollbackState(state / "lib-pull.json")
                    took = in_process(
                        lambda: pull_bundle(ref, out, insecure=True, trusted_keys=[key], rollback=rollback)
                    )
                    shutil.rmtree(out)
                    return took
                cmd = [gapseal_cli(), "bundle", "pull", ref, "--insecure", "--out", str(out), "--key", str(pub)]
                took = run([*cmd, "--state-file", str(state / "pull.json"), "-q"])
                shutil.rmtree(out)
                return took

            def pull_skopeo(durable: bool = False) -> Timing:
                out = root / "skopeo-pulled"
                shutil.rmtree(out, ignore_errors=True)
                wall, cpu = run(
                    [skopeo, "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:x"]
                )
                if durable:  # fsync every file it wrote, as gapseal does (coreutils sync FILE... = fsync each)
                    synced = run(["sync", *(str(p) for p in out.rglob("*") if p.is_file())])
                    wall, cpu = wall + synced[0], cpu + synced[1]
                shutil.rmtree(out)
                return wall, cpu

            ok &= compare("bundle pull --key (fetch + verify) vs skopeo copy docker:// -> oci:", args.rounds,
                          pull_ours, pull_skopeo, size)  # fmt: skip
            # Informational: gapseal fsyncs every file it writes; skopeo does not. The same durability on both sides:
            compare("bundle pull --key vs skopeo copy + sync of the files it wrote", args.rounds, pull_ours,
                    lambda: pull_skopeo(durable=True), size, baseline="skopeo+sync", judged=False)  # fmt: skip
            if oras:
                run([sys.executable, "-c", ORAS_PUSH, reg.host, f"{reg.host}/oras/bench:1.0.0", *blob_files])

                def pull_oras() -> Timing:
                    out = root / "oras-pulled"
                    shutil.rmtree(out, ignore_errors=True)
                    took = run([sys.executable, "-c", ORAS_PULL, reg.host, f"{reg.host}/oras/bench:1.0.0", str(out)])
                    shutil.rmtree(out)
                    return took

                ok &= compare("bundle pull --key vs oras-py pull of the same blobs", args.rounds, pull_ours, pull_oras,
                              size, baseline="oras-py pull")  # fmt: skip
        finally:
            reg.stop()

        starts = [hostile_manifest_rss(root, declare_length=True, absent=True) for _ in range(args.rounds)]
        baseline = min(rss for rss, _ in starts)
        start_up = min(took for _, took in starts)
        print(f"pull against a registry answering 404 (baseline: interpreter, imports): peak RSS {baseline:.1f} MB, "
              f"best {start_up:.2f} s of {args.rounds} (the CLI's start-up)")  # fmt: skip
        worst = 0.0
        for declared in (True, False):
            rss, _ = hostile_manifest_rss(root, declare_length=declared)
            worst = max(worst, rss)
            how = "with Content-Length" if declared else "chunked, no length"
            print(f"pull against a 300 MB manifest ({how}): refused, peak RSS {rss:.1f} MB (+{rss - baseline:.1f})")
        rss_ok = worst < RSS_TARGET_MB
        print(f"  target peak RSS < {RSS_TARGET_MB:.0f} MB: {'met' if rss_ok else 'MISSED'}")
        results.row(
            "bench_registry",
            "bundle pull against a hostile registry's 300 MB manifest",
            f"refused, peak RSS {worst:.1f} MB",
            f"pull against a 404: {baseline:.1f} MB",
            f"target < {RSS_TARGET_MB:.0f} MB",
            rss_ok,
        )
        return 0 if ok and rss_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
