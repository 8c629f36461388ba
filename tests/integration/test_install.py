"""`gapseal install` onto real namespace hosts over ssh, through ansible-runner (see tests/hosts/netns.py).

Hosts (10.231.1-9.0/24): host1 has fake NVIDIA tools (recorded real R535 A100 outputs), host2 fake AMD tools (recorded
MI300X rocminfo), host3 no GPU tools; the fake tools print recorded real outputs because there is no GPU here
(tests/fixtures/hardware/README.md says where each came from). Everything else is real: sshd, Ansible, nftables,
the MiniLM weights (examples/models/minilm), the signed bundle.

The tests of this module share one bundle and run in order: install, idempotent rerun, check mode, egress, ...
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.bundler.verify import verify_bundle
from gapseal.cli import main
from gapseal.installer.record import load_record
from gapseal.signing.keys import SigningKey, load_public_key
from tests.fixtures.hardware.fakebin import install_fake_tools
from tests.hosts.netns import HostFleet, NamespaceHost

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MINILM = REPO / "examples" / "models" / "minilm"
VENV_BIN = Path(sys.executable).parent


SERVICES = [
    {
        "name": "embed",
        "build": "server",
        "model": "minilm",
        "args": ["--model", "{model_dir}", "--host", "{bind}", "--port", "{port}"],
        "bind": "127.0.0.1",
        "port": 8080,
        "env": {"OMP_NUM_THREADS": "2"},
    }
]


@dataclass
class Env:
    """What every test of this module shares."""

    work: Path
    bundle: Path
    pub: Path
    fleet: HostFleet
    nvidia: NamespaceHost
    amd: NamespaceHost
    cpu: NamespaceHost

    @property
    def services(self) -> Path:
        path = self.work / "services.yml"
        if not path.exists():
            path.write_text(yaml.safe_dump(SERVICES))
        return path

    @property
    def state(self) -> Path:
        return self.work / "state" / "rollback.json"

    def root(self, host: NamespaceHost, tag: str = "main") -> Path:
        return self.work / "roots" / tag / host.name

    def inventory(self, hosts: dict[NamespaceHost, dict[str, Any]], name: str) -> Path:
        host_vars = {h.name: v for h, v in hosts.items()}
        doc = self.fleet.inventory(list(hosts), host_vars=host_vars)
        path = self.work / f"{name}.yml"
        path.write_text(yaml.safe_dump(doc))
        return path


def _spec(src: Path) -> Path:
    for backend in ("cuda", "rocm", "cpu"):
        d = src / "builds" / backend
        (d / "bin").mkdir(parents=True)
        (d / "bin" / "serve").write_text(f"#!/bin/sh\n# stand-in inference server, {backend} build\nexec sleep 3600\n")
        (d / "lib").mkdir()
        (d / "lib" / f"libinfer-{backend}.so").write_bytes(hashlib.sha256(backend.encode()).digest() * 4096)
    spec = {
        "apiVersion": "gapseal/v1",
        "kind": "Bundle",
        "metadata": {"name": "minilm-site", "version": "1.0.0"},
        "models": [{"name": "minilm", "path": "models/minilm"}],
        "builds": [
            {
                "name": "server",
                "variants": [
                    {
                        "backend": "cuda",
                        "arch": "amd64",
                        "path": "builds/cuda",
                        "requires": {"nvidia_driver": ">=535", "compute_capability": ">=8.0"},
                    },
                    {
                        "backend": "rocm",
                        "arch": "amd64",
                        "path": "builds/rocm",
                        "requires": {"gfx": ["gfx90a", "gfx942"]},
                    },
                    {"backend": "cpu", "arch": "amd64", "path": "builds/cpu", "requires": {"cpu_flags": ["avx2"]}},
                ],
            }
        ],
    }
    (src / "models").mkdir()
    shutil.copytree(MINILM, src / "models" / "minilm")
    path = src / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def env(host_fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Env:
    if not (MINILM / "model.safetensors").is_file():
        pytest.fail("examples/models/minilm/model.safetensors is missing: run `make model` (connected side)")
    work = Path(tmp_path_factory.mktemp("install"))
    key = SigningKey.generate()
    pub = work / "signer.pub"
    pub.write_bytes(key.public.pem())
    spec = _spec(work / "src")
    create_bundle(spec, key, work / "bundle")
    tools = work / "tools"
    nvidia = host_fleet.add(1, extra_path=[install_fake_tools(tools / "nvidia", "nvidia-r535-a100-mig")])
    amd = host_fleet.add(2, extra_path=[install_fake_tools(tools / "amd", "amd-mi300x")])
    cpu = host_fleet.add(3, extra_path=[install_fake_tools(tools / "none", "none")])
    return Env(work, work / "bundle", pub, host_fleet, nvidia, amd, cpu)


def _install(env: Env, inventory: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    report = env.work / f"report-{time.monotonic_ns()}.json"
    rc = main(
        [
            "install",
            str(env.bundle),
            "-i",
            str(inventory),
            "--key",
            str(env.pub),
            "--state-file",
            str(env.state),
            "--services",
            str(env.services),
            "--quiet",
            "--report",
            str(report),
            *extra,
        ]
    )
    doc = json.loads(report.read_text()) if report.exists() else {}
    return rc, doc


def _hosts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in doc.get("hosts", [])}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _assert_installed(root: Path, backend: str) -> None:
    record = load_record(root / "var/lib/gapseal/installed.json")
    assert record.bundle.name == "minilm-site"
    assert record.variants["server"].backend == backend
    assert record.root == str(root)
    on_disk = sorted(
        str(p)
        for base in (root / "var/lib/gapseal/models", root / "opt/gapseal/builds")
        for p in base.rglob("*")
        if p.is_file()
    )
    assert on_disk == [f.path for f in record.files], "installed files and the record differ"
    for f in record.files:
        assert _sha256(Path(f.path)) == f.digest, f.path
    models = {
        Path(f.path).relative_to(root / "var/lib/gapseal/models/minilm").as_posix()
        for f in record.files
        if f.component == "model/minilm"
    }
    expected = {p.relative_to(MINILM).as_posix() for p in MINILM.rglob("*") if p.is_file()}
    assert models == expected
    assert sorted(p.name for p in (root / "opt/gapseal/builds/server").iterdir()) == [backend]
    assert os.access(root / f"opt/gapseal/builds/server/{backend}/bin/serve", os.X_OK)
    assert not (root / "var/lib/gapseal/.staging").exists(), "staging directory left behind"


def _main_inventory(env: Env) -> Path:
    def hv(h: NamespaceHost, **kw: Any) -> dict[str, Any]:
        return {"gapseal_root": str(env.root(h)), "egress_allow": [f"{h.gateway}/32"], **kw}

    return env.inventory(
        {env.nvidia: hv(env.nvidia), env.amd: hv(env.amd), env.cpu: hv(env.cpu, egress_lockdown=False)}, "main"
    )


def test_install_onto_three_hosts_each_gets_its_variant(env: Env) -> None:
    rc, doc = _install(env, _main_inventory(env))
    hosts = _hosts(doc)
    assert rc == 0, json.dumps(doc, indent=1)
    assert doc["ok"] is True
    assert {n: h["variants"] for n, h in hosts.items()} == {
        "host1": {"server": "cuda"},
        "host2": {"server": "rocm"},
        "host3": {"server": "cpu"},
    }
    assert all(h["status"] == "ok" and h["changed"] > 0 for h in hosts.values())
    _assert_installed(env.root(env.nvidia), "cuda")
    _assert_installed(env.root(env.amd), "rocm")
    _assert_installed(env.root(env.cpu), "cpu")
    # The service: a unit with the offline environment, validated by systemd-analyze, not started (no systemd here).
    assert hosts["host1"]["services"] == [
        {
            "name": "embed",
            "unit": str(env.root(env.nvidia) / "etc/systemd/system/gapseal-embed.service"),
            "state": "not started: systemd is not running on this host",
        }
    ]
    unit = (env.root(env.nvidia) / "etc/systemd/system/gapseal-embed.service").read_text()
    builds, models = env.root(env.nvidia) / "opt/gapseal/builds", env.root(env.nvidia) / "var/lib/gapseal/models"
    assert f"ExecStart={builds}/server/cuda/bin/serve --model {models}/minilm --host 127.0.0.1 --port 8080" in unit
    for switch in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "HF_HUB_DISABLE_TELEMETRY=1", "DO_NOT_TRACK=1"):
        assert f'Environment="{switch}"' in unit
    assert load_record(env.root(env.nvidia) / "var/lib/gapseal/installed.json").services[0].name == "embed"


def test_second_run_changes_nothing(env: Env) -> None:
    rc, doc = _install(env, _main_inventory(env))
    assert rc == 0
    assert {n: (h["changed"], h["changed_tasks"]) for n, h in _hosts(doc).items()} == {
        "host1": (0, []),
        "host2": (0, []),
        "host3": (0, []),
    }


def test_check_mode_reports_a_repair_without_making_it(env: Env) -> None:
    target = env.root(env.cpu) / "var/lib/gapseal/models/minilm/config.json"
    original = target.read_bytes()
    target.write_bytes(original.replace(b"{", b"{ ", 1))  # a tampered file on the host
    tampered = target.read_bytes()
    rc, doc = _install(env, _main_inventory(env), "--check", "--limit", "host3")
    assert rc == 0
    h = _hosts(doc)["host3"]
    assert doc["check"] is True
    assert h["changed"] >= 1
    assert any("model weights" in t for t in h["changed_tasks"]), h["changed_tasks"]
    assert target.read_bytes() == tampered, "check mode changed a file"
    # a real run repairs it
    rc, doc = _install(env, _main_inventory(env), "--limit", "host3", "--tags", "models")
    assert rc == 0
    assert target.read_bytes() == original


def test_rerun_repairs_a_same_size_tampered_weight_file(env: Env) -> None:
    """The rerun's host state hashes every installed file on the host: a flipped byte (same size, same mtime kept)
    makes the model's directory pending again, and the models role puts the bundle's bytes back."""
    target = env.root(env.cpu) / "var/lib/gapseal/models/minilm/model.safetensors"
    before = target.stat()
    with target.open("r+b") as f:
        f.seek(before.st_size // 2)
        byte = f.read(1)
        f.seek(before.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    rc, doc = _install(env, _main_inventory(env), "--limit", "host3")
    assert rc == 0
    h = _hosts(doc)["host3"]
    assert any("model weights" in t for t in h["changed_tasks"]), h["changed_tasks"]
    with target.open("rb") as f:
        f.seek(before.st_size // 2)
        assert f.read(1) == byte
    rc, doc = _install(env, _main_inventory(env), "--limit", "host3")
    assert (rc, _hosts(doc)["host3"]["changed"]) == (0, 0)


def _udp_send(host: NamespaceHost, address: str) -> str:
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "try:\n"
        f"    s.sendto(b'gapseal-egress-probe',('{address}',9)); print('sent')\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    return host.exec(["python3", "-c", code], check=True).stdout.strip()


def test_egress_blocks_other_hosts_but_not_the_allowlist_or_ssh(env: Env) -> None:
    import errno

    h1, h2, h3 = env.nvidia, env.amd, env.cpu
    rules = h1.exec(["nft", "-j", "list", "table", "inet", "gapseal_egress"], check=True).stdout
    chain = next(o["chain"] for o in json.loads(rules)["nftables"] if "chain" in o)
    assert chain["hook"] == "output"
    assert chain["policy"] == "drop"
    # A route to another namespace host, so the only thing in the way is the firewall (no default route exists).
    for h in (h1, h3):
        h.exec(["ip", "route", "replace", f"{h2.address}/32", "via", h.gateway], check=True)
    assert _udp_send(h1, h2.address) == str(errno.EPERM)  # locked down: refused by nftables
    assert _udp_send(h3, h2.address) == "sent"  # control: egress_lockdown false on host3
    assert _udp_send(h1, h1.gateway) == "sent"  # the allowlist (the gateway /32) still works
    r = h1.ssh(["echo", "still-here"])
    assert r.returncode == 0
    assert r.stdout.strip() == "still-here"
    assert h3.exec(["nft", "list", "table", "inet", "gapseal_egress"]).returncode != 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def test_kill9_mid_install_then_rerun_completes_without_partial_files(env: Env) -> None:
    h = env.fleet.add(4, extra_path=[install_fake_tools(env.work / "tools" / "none4", "none")])
    root = env.root(h, "kill9")
    inv = env.inventory({h: {"gapseal_root": str(root), "egress_lockdown": False}}, "kill9")
    staging = root / "var/lib/gapseal/.staging"
    models = root / "var/lib/gapseal/models/minilm"
    proc = subprocess.Popen(
        [str(VENV_BIN / "gapseal"), "install", str(env.bundle), "-i", str(inv), "--key", str(env.pub), "--quiet"]
        + ["--state-file", str(env.state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"},
    )
    seen_partial = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if staging.is_dir() and any(p.suffix == ".partial" for p in staging.iterdir()):
            seen_partial = True
            break
        time.sleep(0.01)
    tree = [proc.pid, *_descendants(proc.pid)]
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert seen_partial, "the install finished before a transfer could be interrupted"
    # Whatever was killed mid-way: a file under models/ is complete and verified, or absent.
    verified = verify_bundle(env.bundle, [load_public_key(env.pub)])
    digests = {f.path: f.digest for f in verified.descriptor.models[0].files}
    if models.exists():
        for p in models.rglob("*"):
            if p.is_file():
                rel = p.relative_to(models).as_posix()
                assert rel in digests, f"unknown file {p}"
                assert _sha256(p) == digests[rel], f"partial file {p}"
    time.sleep(0.5)  # let the host side notice the dead connection
    rc, doc = _install(env, inv)
    assert rc == 0, json.dumps(doc, indent=1)
    _assert_installed(root, "cpu")


def test_unreachable_and_unfit_hosts_fail_clearly_while_others_proceed(env: Env) -> None:
    """host5 has no sshd (connection refused); host6 has R470 NVIDIA tools (no compute capability) and a recorded
    CPU without AVX2 (cpuinfo read from a fixture file), so no variant fits it; host3 installs as before."""
    dead = env.fleet.add(5, start_sshd=False)
    unfit = env.fleet.add(6, extra_path=[install_fake_tools(env.work / "tools" / "r470", "nvidia-r470")])
    no_avx = REPO / "tests/fixtures/hardware/cpuinfo/x86-intel-i5-750-no-avx-vmx-flags.txt"
    inv = env.inventory(
        {
            env.cpu: {"gapseal_root": str(env.root(env.cpu)), "egress_lockdown": False},
            dead: {"gapseal_root": str(env.root(dead))},
            unfit: {"gapseal_root": str(env.root(unfit)), "hardware_cpuinfo_path": str(no_avx)},
        },
        "unreachable",
    )
    rc, doc = _install(env, inv, "--tags", "record")
    assert rc == 1
    assert doc["ok"] is False
    hosts = _hosts(doc)
    assert hosts["host3"]["status"] == "ok"
    assert hosts["host5"]["status"] == "unreachable"
    failure = hosts["host5"]["failures"][0]
    assert failure["unreachable"] is True
    assert dead.address in failure["message"]
    assert "refused" in failure["message"].lower()
    assert hosts["host6"]["status"] == "failed"
    reasons = hosts["host6"]["failures"][0]["message"]
    assert "no variant of build 'server' fits host6" in reasons
    for backend in ("cuda", "rocm", "cpu"):
        assert f"{backend}/amd64" in reasons
    assert "compute_capability" in reasons
    assert "avx2" in reasons
    assert not (env.root(unfit) / "var/lib/gapseal/installed.json").exists()


def test_tampered_bundle_is_refused_before_any_host_is_touched(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    bad = env.work / "tampered"
    shutil.copytree(env.bundle, bad, copy_function=os.link)
    victim = next(p for p in sorted((bad / "blobs/sha256").iterdir()) if 100 < p.stat().st_size < 100_000)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.unlink()  # break the hard link: the original bundle stays intact
    victim.write_bytes(bytes(data))
    root = env.root(env.nvidia, "tampered")
    inv = env.inventory({env.nvidia: {"gapseal_root": str(root)}}, "tampered")
    logins_before = env.nvidia.sshd_log.read_text().count("Accepted publickey")
    rc = main(["install", str(bad), "-i", str(inv), "--key", str(env.pub), "--state-file", str(env.state), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["error"] == "VerificationError"
    assert victim.name in out["message"]
    assert not root.exists()
    assert env.nvidia.sshd_log.read_text().count("Accepted publickey") == logins_before, "a host was contacted"


def test_host_out_of_disk_space_fails_preflight(env: Env) -> None:
    """A 16 MiB tmpfs mounted as the host's gapseal_root (in its own mount namespace): the 90 MB install fails."""
    h = env.amd
    root = env.root(h, "small-disk")
    root.mkdir(parents=True)
    h.exec_in_sessions(["mount", "-t", "tmpfs", "-o", "size=16m", "gapseal-test-small", str(root)], check=True)
    try:
        inv = env.inventory({h: {"gapseal_root": str(root)}}, "small-disk")
        rc, doc = _install(env, inv)
        assert rc == 1
        host = _hosts(doc)["host2"]
        assert host["status"] == "failed"
        failure = host["failures"][0]
        assert "Check architecture, Python modules and free space" in failure["task"]
        assert "not enough free space" in failure["message"]
        assert str(root) in failure["message"]
        assert h.exec_in_sessions(["ls", "-A", str(root)], check=True).stdout == ""  # nothing was written
    finally:
        h.exec_in_sessions(["umount", str(root)])


def test_role_arguments_that_do_not_fit_their_specs_fail_the_host_before_any_role_runs(env: Env) -> None:
    """Every role's meta/argument_specs.yml is checked in one task per host (site.yml's first): a host whose variables
    do not fit fails with each misfit named by role and variable, and nothing is installed on it; a host whose
    variables fit installs as before."""
    bad_root = env.root(env.nvidia, "bad-arguments")
    inv = env.inventory(
        {
            env.nvidia: {
                "gapseal_root": str(bad_root),
                "service_start": "maybe",  # service role: bool
                "images_podman_args": {"--log-level": "debug"},  # images role: list
                "preflight_reserve_bytes": "lots",  # preflight role: int
            },
            env.cpu: {"gapseal_root": str(env.root(env.cpu, "good-arguments")), "egress_lockdown": False},
        },
        "bad-arguments",
    )
    rc, doc = _install(env, inv)
    assert rc == 1
    hosts = _hosts(doc)
    assert hosts["host3"]["status"] == "ok"
    _assert_installed(env.root(env.cpu, "good-arguments"), "cpu")
    bad = hosts["host1"]
    assert bad["status"] == "failed"
    assert [f["task"] for f in bad["failures"]] == ["Check the arguments of every role against its argument spec"]
    message = bad["failures"][0]["message"]
    assert message.startswith("Validation of arguments failed for host1: ")
    assert "role service: argument 'service_start' is of type str" in message
    assert "role images: argument 'images_podman_args' is of type dict" in message
    assert "role preflight: argument 'preflight_reserve_bytes' is of type str" in message
    assert "meta/argument_specs.yml" in message  # the next step: where the expected types are
    assert (bad["ok"], bad["changed"]) == (0, 0)
    assert not bad_root.exists(), "a role ran on a host whose arguments did not fit"


def test_hosts_detect_shows_variants_and_reasons(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "hosts",
            "detect",
            "-i",
            str(_main_inventory(env)),
            "--bundle",
            str(env.bundle),
            "--key",
            str(env.pub),
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    chosen = {h["name"]: h["variants"]["server"]["chosen"]["backend"] for h in doc["hosts"]}
    assert chosen == {"host1": "cuda", "host2": "rocm", "host3": "cpu"}
    host3 = next(h for h in doc["hosts"] if h["name"] == "host3")
    cuda = host3["variants"]["server"]["variants"][0]
    assert cuda["satisfied"] is False
    assert any(c["requirement"] == "backend" and not c["met"] for c in cuda["checks"])


def test_install_from_the_tar_form(env: Env) -> None:
    """The transport form (one tar) is unpacked with the strict reader, verified, installed, and the unpacked copy
    removed; the record names the same manifest digest as the directory form."""
    from gapseal.bundler.archive import pack_layout

    tar = env.work / "tarform" / "minilm-site-1.0.0.gapseal.tar"
    tar.parent.mkdir()
    pack_layout(env.bundle, tar, mtime=0)
    report = env.work / "report-tar.json"
    rc = main(
        ["install", str(tar), "-i", str(_main_inventory(env)), "--key", str(env.pub), "--state-file", str(env.state)]
        + ["--services", str(env.services), "--limit", "host3", "--tags", "record", "--quiet", "--report", str(report)]
    )
    doc = json.loads(report.read_text())
    assert rc == 0, doc
    assert _hosts(doc)["host3"]["changed"] == 0
    assert sorted(p.name for p in tar.parent.iterdir()) == [tar.name]  # no unpacked copy left behind
    record = load_record(env.root(env.cpu) / "var/lib/gapseal/installed.json")
    assert record.bundle.manifest_digest == doc["bundle"]["manifest_digest"]
