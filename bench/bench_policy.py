"""Benchmark: policy evaluation on a 1000-rule firewall input, regopy and the OPA path, in one run.

Target (issue 5): evaluation under 0.5 s. The input is a compliant host whose nftables output chain holds 1000 accept
rules, each to one enclave /24 (the shape ``gapseal audit collect`` writes), so every rule goes through EGRESS-004's
containment check.

Timed, median of ``--runs``:
- ``regopy``: ``evaluate_hosts`` end to end (policy input, Python enclave precompute, regopy input conversion, all seven
  rule packages, results) and its parts;
- ``regopy, no precompute``: the same facts without the evaluator's ``enclave`` annotation, so Rego compares the hex
  bounds itself (why the evaluator precomputes);
- ``opa-server``: ``evaluate_hosts`` through ``opa-python-client`` against the loopback OPA REST server of
  tests/opa_rest (OPA's Go evaluator; no ``opa`` binary exists here);
- baseline ``opa in-process``: the same evaluation in OPA's Go evaluator without HTTP.

Run: ``.venv/bin/python -m bench.bench_policy [--runs N] [--rules N]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import regopy as regopy_module

from bench import results
from gapseal.audit.engines import load_policy_set
from gapseal.audit.engines.interface import PolicyEngine
from gapseal.audit.engines.opa_server import OpaServerEngine
from gapseal.audit.engines.regopy_engine import RegopyEngine
from gapseal.audit.evaluate import evaluate_hosts, host_input_from_bytes, policy_input
from tests.opa_rest.facts_fixtures import facts_bytes, firewall_facts
from tests.opa_rest.golib_engine import GolibEngine
from tests.opa_rest.server import OpaRestServer

TARGET_SECONDS = 0.5


CPU: dict[str, float] = {}


def _time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls; the median CPU time of this process is kept in ``CPU`` by result."""
    values, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        values.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    wall = statistics.median(values)
    CPU[f"{wall!r}"] = statistics.median(cpu)
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rules", type=int, default=1000)
    args = parser.parse_args(argv)

    policy_set = load_policy_set()
    facts = firewall_facts(args.rules)
    raw = facts_bytes(facts)
    host = host_input_from_bytes(raw, "facts/fw.json")
    annotated = policy_input(host.facts, policy_set.data)
    plain = {k: v for k, v in annotated.items()}
    plain["firewall"] = {
        **annotated["firewall"],
        "nftables": {
            **annotated["firewall"]["nftables"],
            "rules": [
                {**r, "daddr": [{k: v for k, v in n.items() if k != "enclave"} for n in r["daddr"]]}
                for r in annotated["firewall"]["nftables"]["rules"]
            ],
        },
    }
    print(f"input: {args.rules} nftables rules, facts {len(raw) / 1e6:.2f} MB; {args.runs} runs, median")
    print("cpu: this process's CPU time (the OPA server runs in this process too); wall includes waiting for a core")

    def timings(engine: PolicyEngine, label: str) -> dict[str, float]:
        t = time.perf_counter()
        engine.load(policy_set)
        load = time.perf_counter() - t
        results = evaluate_hosts([host], engine)  # warm-up (OPA prepares each query once)
        assert results.summary.compliant, f"{label}: the 1000-rule input should be compliant"
        out = {
            "load policies (once)": load,
            "evaluate_hosts (total)": _time(lambda: evaluate_hosts([host], engine), args.runs),
            "  policy input + enclave precompute": _time(lambda: policy_input(host.facts, policy_set.data), args.runs),
            "  engine.evaluate, fresh input (all 7 packages)": _time(
                lambda: engine.evaluate(policy_input(host.facts, policy_set.data)), args.runs
            ),
        }
        return out

    rows: dict[str, dict[str, float]] = {}
    regopy = RegopyEngine()
    rows["regopy"] = timings(regopy, "regopy")
    rows["regopy"]["    of which regopy input conversion"] = _time(lambda: regopy_module.Input(annotated), args.runs)
    rows["regopy"]["  engine.evaluate, no precompute (hex in Rego)"] = _time(
        lambda: regopy.evaluate(copy.deepcopy(plain)), max(1, args.runs // 2)
    )
    with OpaRestServer() as server:
        rows["opa-server (opa-python-client -> loopback OPA REST)"] = timings(OpaServerEngine(server.url), "opa-server")
    rows["baseline: opa in-process (Go evaluator, no HTTP)"] = timings(GolibEngine(), "opa in-process")

    print(f"\n{'':52} {'wall':>8}   {'cpu':>8}")
    for label, values in rows.items():
        print(f"{label}")
        for name, seconds in values.items():
            cpu = CPU.get(f"{seconds!r}")
            print(f"  {name:<50} {seconds:8.3f} s " + (f"{cpu:8.3f} s" if cpu is not None else ""))

    ok = True
    for label in ("regopy", "opa-server (opa-python-client -> loopback OPA REST)"):
        total = rows[label]["evaluate_hosts (total)"]
        met = total < TARGET_SECONDS
        ok &= met
        print(f"\n{label}: evaluation {total:.3f} s -> target < {TARGET_SECONDS} s {'MET' if met else 'MISSED'}")
    baseline = rows["baseline: opa in-process (Go evaluator, no HTTP)"]["evaluate_hosts (total)"]
    for label, engine in (("regopy", "regopy"), ("opa-server (opa-python-client -> loopback OPA REST)", "OPA server")):
        total = rows[label]["evaluate_hosts (total)"]
        results.row(
            "bench_policy",
            f"evaluate a host with a 1000-rule firewall, {engine}",
            f"{total:.2f} s",
            f"OPA in-process (Go) {baseline:.2f} s",
            f"target < {TARGET_SECONDS} s",
            total < TARGET_SECONDS,
        )
    print(f"regopy / opa in-process: {rows['regopy']['evaluate_hosts (total)'] / baseline:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
