"""Processes of this host (its network namespace), their telemetry switches and proxy variables.

Real processes are started inside a namespace this test creates; one more runs outside it and must not be seen.
A crafted /proc tree covers what cannot be staged (an unreadable environ, a /proc without processes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors.processes import (
    collect_processes,
    list_processes,
    own_netns,
    parse_environ,
    redact_argv,
)
from gapseal.audit.collectors.telemetry import collect_telemetry

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)

REPO = Path(__file__).resolve().parents[3]
SECRET = "hunter2-do-not-store"


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"gs-proc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    """A script named ``vllm``: started as ``vllm serve``, its command line looks like vLLM's (it only sleeps)."""
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport time\nprint('ready', flush=True)\ntime.sleep(120)\n")
    script.chmod(0o755)
    return script


def start(argv: list[str], env: dict[str, str], ns: str | None = None) -> subprocess.Popen[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def collect_in(ns: str, root: Path) -> dict[str, Any]:
    code = (
        "import json\nfrom pathlib import Path\n"
        "from gapseal.audit.collectors._common import RawStore\n"
        "from gapseal.audit.collectors._units import load_units\n"
        "from gapseal.audit.collectors.processes import collect_processes\n"
        "from gapseal.audit.collectors.telemetry import collect_telemetry\n"
        "from gapseal.audit.collectors.proxy import collect_proxy\n"
        f"root = Path({str(root)!r}); s = RawStore(); p = collect_processes(s)\n"
        "u = load_units(root)\n"
        "print(json.dumps({'processes': p.model_dump(mode='json'),\n"
        "  'telemetry': collect_telemetry(s, p, u, root).model_dump(mode='json'),\n"
        "  'proxy': collect_proxy(s, root, u, p).model_dump(mode='json'), 'raw': list(s.items())}))\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    ).stdout  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


def test_inference_processes_of_this_namespace_only(ns: str, fake_vllm: Path, tmp_path: Path) -> None:
    path = "/usr/bin:/bin"
    vllm = start(
        [str(fake_vllm), "serve", "/models/m", "--api-key", SECRET, f"--hf-token={SECRET}"],
        {
            "PATH": path,
            "VLLM_NO_USAGE_STATS": "1",
            "HTTPS_PROXY": f"http://svc:{SECRET}@10.231.52.1:3128",
            "API_KEY": SECRET,
        },
        ns,
    )
    llama = start(["sleep", "120"], {"PATH": path, "GAPSEAL_SERVICE": "llama.cpp", "LLAMA_OFFLINE": "1"}, ns)
    idle = start(["sleep", "120"], {"PATH": path}, ns)
    outside = start([str(fake_vllm), "serve", "/other"], {"PATH": path})
    try:
        for p in (vllm, outside):
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        facts = collect_in(ns, tmp_path)
    finally:
        for p in (vllm, llama, idle, outside):
            p.kill()
            p.wait()
    procs = facts["processes"]
    assert procs["status"] == "ok"
    assert procs["netns"].startswith("net:[")
    found = {p["pid"]: p for p in procs["inference"]}
    # `ip netns exec` and `env` exec in place: the pids are those of the processes themselves
    assert set(found) == {vllm.pid, llama.pid}
    assert found[vllm.pid]["services"] == ["vllm"]
    assert found[vllm.pid]["cmdline"] == [
        sys.executable, str(fake_vllm), "serve", "/models/m", "--api-key", "***", "--hf-token=***",
    ]  # fmt: skip
    assert found[vllm.pid]["environment"] == {
        "HTTPS_PROXY": "http://***@10.231.52.1:3128",
        "VLLM_NO_USAGE_STATS": "1",
    }
    assert found[llama.pid]["services"] == ["llama.cpp"]
    assert procs["scanned"] >= 3

    tele = {(s["service"], s["location"]): s for s in facts["telemetry"]["services"]}
    v = tele[("vllm", f"pid:{vllm.pid}")]
    assert v["origin"] == "process"
    assert v["telemetry_disabled"] is False
    assert {r["purpose"]: r["satisfied"] for r in v["requirements"]} == {"usage statistics": True, "hub offline": False}
    assert tele[("llama.cpp", f"pid:{llama.pid}")]["telemetry_disabled"] is True
    assert facts["telemetry"]["violations"] == [f"vllm@pid:{vllm.pid}: hub offline"]

    (proxy,) = facts["proxy"]["proxies"]
    assert (proxy["origin"], proxy["location"], proxy["value"]) == (
        "process", f"pid:{vllm.pid}", "http://***@10.231.52.1:3128",
    )  # fmt: skip

    environ_src = [s for s in procs["sources"] if s["path"].endswith("/environ")]
    assert {s["path"] for s in environ_src} == {f"/proc/{vllm.pid}/environ", f"/proc/{llama.pid}/environ"}
    assert all(s["stored"] is False and s["sha256"] for s in procs["sources"])  # environ and cmdline: hashed only
    everything = json.dumps(facts)
    assert SECRET not in everything  # neither in the facts nor in any stored raw output


def make_proc(root: Path, pid: int, cmdline: list[str], *, netns: str, environ: bytes | None) -> None:
    d = root / str(pid)
    (d / "ns").mkdir(parents=True)
    (d / "ns" / "net").symlink_to(netns)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmdline) + b"\0")
    (d / "comm").write_text(Path(cmdline[0]).name[:15] + "\n")
    if environ is not None:
        (d / "environ").write_bytes(environ)


def test_crafted_proc_unreadable_environ_fails_every_requirement(tmp_path: Path) -> None:
    """Mock /proc (a real one cannot hide one process's environ from root): the switches are unknown, so unmet."""
    proc = tmp_path / "proc"
    (proc / "self" / "ns").mkdir(parents=True)
    (proc / "self" / "ns" / "net").symlink_to("net:[4026530001]")
    make_proc(proc, 100, ["/usr/bin/ollama", "serve"], netns="net:[4026530001]", environ=None)
    make_proc(proc, 101, ["/usr/bin/ollama", "serve"], netns="net:[4026530001]", environ=b"OLLAMA_NO_CLOUD=1\0")
    make_proc(proc, 102, ["/usr/bin/ollama", "serve"], netns="net:[4026539999]", environ=b"")
    facts = collect_processes(RawStore(), proc)
    assert facts.netns == "net:[4026530001]"
    assert [(p.pid, p.environ_readable) for p in facts.inference] == [(100, False), (101, True)]
    tele = collect_telemetry(RawStore(), facts, [], tmp_path)
    by_pid = {s.location: s for s in tele.services}
    assert by_pid["pid:100"].environment_known is False
    assert by_pid["pid:100"].telemetry_disabled is False
    assert by_pid["pid:101"].telemetry_disabled is True
    assert tele.violations == ["ollama@pid:100: cloud features"]
    missing = next(s for s in facts.sources if s.path == f"{proc}/100/environ")
    assert missing.error == "not found"


def test_crafted_proc_without_processes_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    facts = collect_processes(RawStore(), tmp_path / "proc")
    assert facts.status == "unknown"
    assert facts.reason == f"{tmp_path}/proc lists no processes (procfs not mounted?)"
    tele = collect_telemetry(RawStore(), facts, [], tmp_path)
    assert tele.status == "unknown"
    assert tele.reason == f"processes could not be scanned: {facts.reason}"


def test_crafted_proc_without_own_netns_is_unknown(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_proc(proc, 100, ["/usr/bin/ollama", "serve"], netns="net:[1]", environ=b"")
    facts = collect_processes(RawStore(), proc)
    assert facts.status == "unknown"
    assert facts.reason is not None
    assert "this host's processes cannot be told apart" in facts.reason


def test_live_processes_of_the_collectors_own_namespace() -> None:
    ns = own_netns(Path("/proc"))
    assert ns is not None
    assert ns.startswith("net:[")
    procs = list_processes(Path("/proc"), ns)
    assert os.getpid() not in {p.pid for p in procs}  # the collector never reports itself
    assert 1 in {p.pid for p in procs} or procs


def test_parse_environ() -> None:
    assert parse_environ(b"A=1\0B=x=y\0junk\0\0") == {"A": "1", "B": "x=y"}


@pytest.mark.parametrize(
    ("argv", "redacted"),
    [
        (["vllm", "serve", "m", "--api-key", "sk-1"], ["vllm", "serve", "m", "--api-key", "***"]),
        (["llama-server", "--api-key=sk-1", "-m", "x"], ["llama-server", "--api-key=***", "-m", "x"]),
        (["tgi", "--hf-token", "hf_x", "--port", "80"], ["tgi", "--hf-token", "***", "--port", "80"]),
        (["x", "--password"], ["x", "--password"]),
        (["x", "--SECRET-file", "/run/s", "--keep"], ["x", "--SECRET-file", "***", "--keep"]),
        (["python3", "app.py", "--port", "8000"], ["python3", "app.py", "--port", "8000"]),
    ],
)
def test_redact_argv(argv: list[str], redacted: list[str]) -> None:
    assert redact_argv(argv) == redacted
