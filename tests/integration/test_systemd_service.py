"""Health check, fallback and restore of a service unit, on a real systemd host (tests/hosts/nspawn.py).

The host shows a Vulkan GPU through the recorded real ``vulkaninfo`` output of tests/fixtures/hardware (there is no
GPU here), so the build's vulkan variant is chosen first. Its launcher kills itself with SIGILL, as a build compiled
for instructions the host lacks would; the cpu variant is a small real HTTP server (Python's http.server) so these
tests stay quick. The real LLM runs in tests/e2e/test_llm_enclave.py.

Host index 232 of GAPSEAL_TEST_SUBNET.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.cli import main
from gapseal.signing.keys import SigningKey
from tests.fixtures.hardware.fakebin import install_fake_tools
from tests.hosts.nspawn import SystemdFleet, SystemdHost

pytestmark = pytest.mark.integration

CRASH = "#!/bin/sh\n# Dies the way a build for the wrong CPU does: an illegal instruction.\nkill -ILL $$\n"
TOY_SERVER = '''\
"""A tiny real HTTP service: /health, and POST /v1/completions answering with its version."""
import http.server, json, sys
VERSION = sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def _send(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._send({"status": "ok", "version": VERSION})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send({"choices": [{"text": "toy " + VERSION}]})
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
'''
TOY_LAUNCHER = '#!/bin/sh\nhere=$(cd "$(dirname "$0")/.." && pwd)\nexec /usr/bin/python3 "$here/toy.py" "$@"\n'
PORT = 8090


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _spec(src: Path, version: str, *, cpu_crashes: bool, fallback: bool) -> Path:
    """A spec whose vulkan variant crashes with SIGILL and whose cpu variant serves (or crashes too)."""
    _write(src / "builds/vulkan/bin/serve", CRASH, 0o755)
    _write(src / "builds/cpu/bin/serve", CRASH if cpu_crashes else TOY_LAUNCHER, 0o755)
    _write(src / "builds/cpu/toy.py", TOY_SERVER)
    _write(src / "docs/README.md", f"toy service {version}\n")
    spec = {
        "apiVersion": "gapseal/v1",
        "kind": "Bundle",
        "metadata": {"name": "toy-service", "version": version},
        "files": [{"name": "docs", "path": "docs/"}],
        "builds": [
            {
                "name": "toy",
                "variants": [
                    {
                        "backend": "vulkan",
                        "arch": "amd64",
                        "path": "builds/vulkan",
                        "requires": {"vulkan_api": ">=1.3"},
                    },
                    {"backend": "cpu", "arch": "amd64", "path": "builds/cpu"},
                ],
            }
        ],
        "services": [
            {
                "name": "toy",
                "build": "toy",
                "exec": "bin/serve",
                "args": ["{bind}", "{port}", version],
                "port": PORT,
                "health": {"http": "/health", "timeout": "30s", "request": {"path": "/v1/completions", "body": {}}},
                "fallback": fallback,
            }
        ],
    }
    path = src / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class Lab:
    """One systemd host with a (fake, recorded) Vulkan GPU, a signing key and a place for bundles."""

    def __init__(self, work: Path, host: SystemdHost, fleet: SystemdFleet) -> None:
        self.work = work
        self.host = host
        self.key = SigningKey.generate()
        self.pub = work / "signer.pub"
        self.pub.write_bytes(self.key.public.pem())
        self.inventory = work / "inventory.yml"
        self.inventory.write_text(
            yaml.safe_dump(
                fleet.inventory([host], host_vars={host.name: {"service_bind": host.address, "egress_lockdown": False}})
            )
        )

    def bundle(self, version: str, *, cpu_crashes: bool, fallback: bool) -> Path:
        out = self.work / f"bundle-{version}"
        create_bundle(
            _spec(self.work / f"src-{version}", version, cpu_crashes=cpu_crashes, fallback=fallback),
            self.key,
            out,
        )
        return out

    def install(self, bundle: Path) -> tuple[int, dict[str, Any]]:
        report = self.work / f"report-{time.monotonic_ns()}.json"
        argv = ["install", str(bundle), "-i", str(self.inventory), "--key", str(self.pub), "--quiet"]
        rc = main([*argv, "--state-file", str(self.work / "state.json"), "--report", str(report)])
        return rc, json.loads(report.read_text())


@pytest.fixture(scope="module")
def lab(systemd_fleet: SystemdFleet, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    work = Path(tmp_path_factory.mktemp("service"))
    tools = install_fake_tools(work / "gpu", "vulkan-renoir-1650ti")
    host = systemd_fleet.boot_many([232], tools={"vulkaninfo": tools / "vulkaninfo"})[0]
    return Lab(work, host, systemd_fleet)


def _service(doc: dict[str, Any]) -> dict[str, Any]:
    [host] = doc["hosts"]
    [service] = host["services"]
    return {"status": host["status"], **service}


def _get(host: SystemdHost, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{host.address}:{PORT}{path}", timeout=10) as resp:  # noqa: S310 - test host
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def test_a_variant_killed_by_sigill_falls_back_to_the_next_that_fits(lab: Lab) -> None:
    """vulkan is chosen, dies of SIGILL; with fallback the cpu variant is installed, started and healthy."""
    rc, doc = lab.install(lab.bundle("1.0.0", cpu_crashes=False, fallback=True))
    svc = _service(doc)
    assert rc == 0, doc
    assert svc["status"] == "ok"
    assert svc["backend"] == "cpu"
    assert svc["healthy"] is True
    first, second = svc["attempts"]
    assert first["backend"] == "vulkan"
    assert first["healthy"] is False
    assert first["exit_code"] in ("killed", "dumped")
    assert first["exit_status"] == "SIGILL"
    assert first["journal"], "the failed attempt carries the unit's last journal lines"
    assert second == {**second, "backend": "cpu", "healthy": True}
    assert svc["exposure"] is not None, "systemd-analyze security exposure is reported"
    assert _get(lab.host, "/health") == {"status": "ok", "version": "1.0.0"}
    unit = lab.host.ssh(["systemctl", "show", "-p", "ActiveState,User,DynamicUser", "gapseal-toy.service"]).stdout
    assert "ActiveState=active" in unit
    assert "DynamicUser=yes" in unit


def test_a_rerun_after_a_fallback_keeps_the_variant_that_worked_and_changes_nothing(lab: Lab) -> None:
    """The same bundle again: the service stays on cpu (no new SIGILL attempt), nothing changes, still healthy."""
    pid = lab.host.ssh(["systemctl", "show", "-p", "MainPID", "--value", "gapseal-toy.service"]).stdout.strip()
    rc, doc = lab.install(lab.work / "bundle-1.0.0")
    svc = _service(doc)
    assert rc == 0, doc
    assert svc["backend"] == "cpu"
    assert [a["backend"] for a in svc["attempts"]] == ["cpu"]
    assert doc["hosts"][0]["changed"] == 0, doc["hosts"][0]["changed_tasks"]
    assert lab.host.ssh(["systemctl", "show", "-p", "MainPID", "--value", "gapseal-toy.service"]).stdout.strip() == pid


def test_a_new_version_that_crashes_everywhere_restores_the_previous_one(lab: Lab) -> None:
    """2.0.0 crashes on every variant and has no fallback: the host is failed, and 1.0.0 runs and answers again."""
    rc, doc = lab.install(lab.bundle("2.0.0", cpu_crashes=True, fallback=False))
    svc = _service(doc)
    assert rc == 1
    assert svc["status"] == "failed", "a crashing build never leaves a host reported ok"
    assert svc["healthy"] is False
    [attempt] = svc["attempts"]
    assert attempt["backend"] == "vulkan"
    assert attempt["exit_status"] == "SIGILL"
    assert svc["restored"] == "toy-service 1.0.0 (cpu): healthy"
    assert any("SIGILL" in f["message"] or "ILL" in f["message"] for f in doc["hosts"][0]["failures"])
    assert _get(lab.host, "/health") == {"status": "ok", "version": "1.0.0"}
