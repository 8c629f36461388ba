"""Benchmark: the installed LLM service on a real systemd host vs the same model in-process, in the same run.

Input: examples/clinic-chat.yaml (Gemma 3 270M Q4_K_M, llama.cpp's server from the xllamacpp CPU wheel; fetched by
``make model``), signed here and installed with ``gapseal install`` onto one systemd-nspawn host (tests/hosts/nspawn.py,
Debian 12, systemd as PID 1, host index 240 of GAPSEAL_TEST_SUBNET), the service on the host's enclave address.

Measured:
- **service start to first token**: ``systemctl restart gapseal-chat`` over ssh, then a streamed completion sent as
  soon as /health answers; the clock runs from the restart command to the first generated text (model load included).
- **tokens/s over the enclave address**: a streamed completion of N tokens (temperature 0, EOS ignored) from the
  controller to http://<host address>:8080, decode rate = (tokens - 1) / (last token - first token).
- **baseline, tokens/s in-process**: the same GGUF, prompt and parameters through ``xllamacpp.Server`` in this process
  (``handle_completions``, its own reported decode rate), same threads as the service (every core).
Both sides are printed with the ratio. Target: the service over the network keeps at least 0.8x the in-process decode
rate (HTTP and a systemd sandbox should cost next to nothing per token). The host shares this machine's 2 cores, so
the two sides run one after the other, never at once; the load average is printed.

Run: ``.venv/bin/python -m bench.bench_llm`` (root: it boots an nspawn host).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from bench import results

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "examples" / "clinic-chat.yaml"
GGUF = REPO / "examples" / "models" / "gemma3-270m" / "gemma-3-270m-q4_k_m.gguf"
PROMPT = "Question: What do hospitals do?\nAnswer:"
TOKENS = 64
TARGET_RATIO = 0.8
HOST_INDEX = 240


def _stream(address: str, n: int) -> tuple[float, float, int]:
    """Stream a completion; return (seconds to first token, seconds from first to last token, tokens)."""
    body = {"prompt": PROMPT, "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": True}
    req = urllib.request.Request(  # noqa: S310 - http:// to the bench's own nspawn host
        f"http://{address}/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    start = time.monotonic()
    first = last = 0.0
    tokens = 0
    with opener.open(req, timeout=600) as resp:
        for raw in resp:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            if json.loads(line[5:])["choices"][0].get("text"):
                last = time.monotonic() - start
                first = first or last
                tokens += 1
    return first, last - first, tokens


def _healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=2) as resp:  # noqa: S310 - bench host
            return bool(resp.status == 200)
    except OSError:
        return False


def _in_process(n: int) -> tuple[float, int]:
    """Decode rate (tokens/s) and tokens of the same completion through xllamacpp in this process."""
    import xllamacpp  # type: ignore[import-untyped]

    params = xllamacpp.CommonParams()
    params.model.path = str(GGUF)
    params.n_ctx = 2048
    server = xllamacpp.Server(params)
    server.handle_completions({"prompt": PROMPT, "max_tokens": 4, "temperature": 0})  # warm-up, as the service had
    result = server.handle_completions({"prompt": PROMPT, "max_tokens": n, "temperature": 0, "ignore_eos": True})
    timings = result["timings"]
    return float(timings["predicted_per_second"]), int(timings["predicted_n"])


def main(argv: list[str] | None = None) -> int:
    """Install, measure both sides, print them and the ratio; 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="Work directory parent (default: a temp dir).")
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args(argv)
    if not GGUF.is_file():
        print("the Gemma GGUF is missing: run `make model`", file=sys.stderr)
        return 1
    sys.path.insert(0, str(REPO))
    from gapseal.bundler.create import create_bundle
    from gapseal.cli import main as cli
    from gapseal.signing.keys import SigningKey
    from tests.hosts.netns import SUBNET_PREFIX
    from tests.hosts.nspawn import SystemdFleet, build_rootfs

    with tempfile.TemporaryDirectory(dir=opts.dir, prefix="bench-llm-") as tmp:
        work = Path(tmp)
        os.environ["GAPSEAL_STATE_DIR"] = str(work / "state")
        key = SigningKey.generate()
        (work / "team.pub").write_bytes(key.public.pem())
        create_bundle(SPEC, key, work / "bundle")
        with SystemdFleet(work / "hosts", build_rootfs()) as fleet:
            [host] = fleet.boot_many([HOST_INDEX])
            hv = {host.name: {"service_bind": host.address, "service_enclave": [f"{SUBNET_PREFIX}.0.0/16"]}}
            (work / "inv.yml").write_text(yaml.safe_dump(fleet.inventory([host], host_vars=hv)))
            rc = cli(
                [
                    "install",
                    str(work / "bundle"),
                    "-i",
                    str(work / "inv.yml"),
                    "--key",
                    str(work / "team.pub"),
                    "--quiet",
                ]
            )
            if rc != 0:
                print(f"install failed (exit {rc})", file=sys.stderr)
                return 1
            address = f"{host.address}:8080"
            starts: list[float] = []
            for _ in range(opts.rounds):
                t0 = time.monotonic()
                host.ssh(["systemctl", "restart", "gapseal-chat.service"], timeout=60)
                while not _healthy(address):
                    time.sleep(0.05)
                _stream(address, 1)  # returns once the first token has arrived
                starts.append(time.monotonic() - t0)
            _stream(address, 4)  # warm-up
            rates = []
            for _ in range(opts.rounds):
                _, decode, tokens = _stream(address, opts.tokens)
                rates.append((tokens - 1) / decode if decode > 0 else 0.0)
        local_rate, _ = _in_process(opts.tokens)  # after the host is halted: the two sides never share the cores
    service_rate = sorted(rates)[len(rates) // 2]
    ratio = service_rate / local_rate if local_rate else 0.0
    load = os.getloadavg()
    print(f"model: {GGUF.name} ({GGUF.stat().st_size / 1e6:.0f} MB), prompt {PROMPT!r}, {opts.tokens} tokens")
    print(
        f"service start to first token (systemctl restart -> first text), {opts.rounds} rounds: "
        + ", ".join(f"{s:.2f} s" for s in starts)
        + f"; median {sorted(starts)[len(starts) // 2]:.2f} s"
    )
    print(f"tokens/s over the enclave address ({address}), median of {opts.rounds}: {service_rate:.1f}")
    print(f"tokens/s in-process through xllamacpp (baseline):                    {local_rate:.1f}")
    print(f"ratio service/in-process: {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores shared with other work)")
    first_token = sorted(starts)[len(starts) // 2]
    results.row(
        "bench_llm",
        "Gemma 3 270M behind the installed llama.cpp service: restart to first token; decode tokens/s",
        f"first token {first_token:.2f} s; {service_rate:.1f} tokens/s over the enclave address",
        f"in-process xllamacpp {local_rate:.1f} tokens/s",
        f"{ratio:.2f}x (target >= {TARGET_RATIO})",
        ratio >= TARGET_RATIO,
    )
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
