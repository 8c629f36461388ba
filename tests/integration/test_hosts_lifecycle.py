"""An operator's day on real namespace hosts: plan (--check), install from a relative path, status, uninstall.

Hosts 101 and 102 of GAPSEAL_TEST_SUBNET (tests/hosts/netns.py), each with its own sshd and nftables, no GPU tools
(the CPU variant is chosen from the real /proc/cpuinfo). Everything is real: sshd, Ansible through ansible-runner,
nftables, the signed bundle (its build carries a wheel, so the runtime role makes the variant's venv). The tests of
this module share one install and run in order. Each host installs into its own prefix, which is empty before the
install: after uninstall it holds exactly what uninstall reports it kept.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.cli import main
from gapseal.signing.keys import SigningKey
from tests.fixtures.hardware.fakebin import install_fake_tools
from tests.hosts.netns import HostFleet, NamespaceHost
from tests.integration.test_systemd_lifecycle import write_tiny_wheel

pytestmark = pytest.mark.integration

RECORD = "var/lib/gapseal/installed.json"


@dataclass
class Env:
    work: Path
    fleet: HostFleet
    locked: NamespaceHost
    """egress lockdown on"""
    open_host: NamespaceHost
    """egress_lockdown: false"""

    def root(self, host: NamespaceHost) -> Path:
        return self.work / "roots" / host.name

    def root_of(self, name: str) -> Path:
        return self.work / "roots" / name


def _spec(src: Path, name: str, flags: list[str]) -> Path:
    (src / "builds" / "cpu" / "bin").mkdir(parents=True)
    (src / "builds" / "cpu" / "bin" / "serve").write_text("#!/bin/sh\nexec sleep 3600\n")
    (src / "builds" / "cpu" / "wheels").mkdir()
    write_tiny_wheel(src / "builds" / "cpu" / "wheels" / "idle_helper-1.0-py3-none-any.whl")
    (src / "builds" / "cpu" / "model-config.bin").write_bytes(b"stand-in data\n" * 512)
    (src / "docs").mkdir()
    (src / "docs" / "runbook.md").write_text("# runbook\n")
    spec = {
        "apiVersion": "gapseal/v1",
        "kind": "Bundle",
        "metadata": {"name": name, "version": "1.0.0", "created": "2026-01-01T00:00:00Z"},
        "files": [{"name": "docs", "path": "docs/"}],
        "builds": [
            {
                "name": "server",
                "variants": [
                    {"backend": "cpu", "arch": "amd64", "path": "builds/cpu", "requires": {"cpu_flags": flags}},
                ],
            }
        ],
        "services": [{"name": "api", "build": "server", "exec": "bin/serve", "port": 8080, "bind": "127.0.0.1"}],
    }
    path = src / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def env(host_fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Env:
    work = Path(tmp_path_factory.mktemp("lifecycle"))
    key = SigningKey.generate()
    (work / "team.pub").write_bytes(key.public.pem())
    create_bundle(_spec(work / "src", "lifecycle", ["sse2"]), key, work / "site-1.0.0")
    # the same build, demanding a CPU flag no machine has: no variant fits any host
    create_bundle(_spec(work / "src-unfit", "unfit", ["gapseal_no_such_flag"]), key, work / "unfit-1.0.0")
    tools = install_fake_tools(work / "tools", "none")
    locked = host_fleet.add(101, extra_path=[tools])
    open_host = host_fleet.add(102, extra_path=[tools])
    e = Env(work, host_fleet, locked, open_host)
    host_vars: dict[str, dict[str, Any]] = {
        locked.name: {"gapseal_root": str(e.root(locked)), "egress_allow": [f"{locked.gateway}/32"]},
        open_host.name: {"gapseal_root": str(e.root(open_host)), "egress_lockdown": False},
    }
    (work / "inventory.yml").write_text(yaml.safe_dump(host_fleet.inventory([locked, open_host], host_vars=host_vars)))
    return e


def _gapseal(env: Env, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    """Run the CLI from the work directory with relative paths, as the README tells an operator to."""
    monkeypatch.chdir(env.work)
    monkeypatch.setenv("GAPSEAL_STATE_DIR", str(env.work / "state"))
    return main(list(argv))


def _installed_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _tree(root: Path) -> list[str]:
    """Every path under root, directories and symlinks included (none followed), relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_check_mode_prints_a_plan_per_host_and_changes_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _gapseal(env, monkeypatch, "install", "site-1.0.0", "-i", "inventory.yml", "--key", "team.pub", "--check")
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "check mode: nothing changed on 2 host(s)" in out
    assert "installed on" not in out
    locked_root = env.root(env.locked)
    assert f"write  {locked_root}/opt/gapseal/builds/server/cpu/bin/serve" in out
    assert "gapseal-api.service (would be)" in out, "the unit file's diff"
    assert '+Environment="HF_HUB_OFFLINE=1"' in out
    assert f"{locked_root}/etc/gapseal/egress.nft (would be)" in out, "the firewall rules' diff"
    assert "policy drop" in out
    assert "run log: " in out
    assert _installed_files(locked_root) == []
    assert _installed_files(env.root(env.open_host)) == []
    assert env.locked.exec(["nft", "list", "table", "inet", "gapseal_egress"]).returncode != 0


def test_install_from_relative_paths_keeps_a_run_log(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _gapseal(env, monkeypatch, "install", "site-1.0.0", "-i", "inventory.yml", "--key", "team.pub")
    out, err = capsys.readouterr()
    assert rc == 0, out
    assert "installed on 2 host(s)" in out
    # no terminal here: progress is plain per-host lines a CI log can show, no bars, no escape sequences
    assert f"{env.locked.name} | changed | " in err
    assert "\x1b[" not in err
    run_dir = Path(out.split("run log: ")[1].split()[0])
    assert {p.name for p in run_dir.iterdir()} == {"events.jsonl", "install.log", "report.json"}
    log = (run_dir / "install.log").read_text()
    assert f"{env.locked.name} | changed | " in log
    report = json.loads((run_dir / "report.json").read_text())
    assert (report["ok"], report["run_log"]) == (True, str(run_dir))
    for host in (env.locked, env.open_host):
        assert (env.root(host) / RECORD).is_file()
        assert (env.root(host) / "opt/gapseal/builds/server/cpu.venv/bin/python").exists(), "the variant's venv"


def _status(env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *extra: str) -> Any:
    rc = _gapseal(env, monkeypatch, "hosts", "status", "-i", "inventory.yml", "--json", *extra)
    doc = json.loads(capsys.readouterr().out)
    assert rc == (0 if doc["ok"] else 1)
    return doc


def test_status_shows_bundle_variant_units_and_intact_files(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _status(env, monkeypatch, capsys)
    assert (doc["kind"], doc["version"], doc["ok"]) == ("gapseal.HostsStatus", 1, True)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert list(hosts) == [env.locked.name, env.open_host.name]
    h = hosts[env.locked.name]
    assert (h["bundle"], h["version"], h["variants"]) == ("lifecycle", "1.0.0", {"server": "cpu/amd64"})
    assert h["units"] == [
        {
            "name": "api",
            "unit": f"{env.root(env.locked)}/etc/systemd/system/gapseal-api.service",
            "state": "systemd not running",
        }
    ]
    assert h["files"]["ok"] == h["files"]["total"] > 0
    assert h["files"]["method"] == "size"
    assert h["problems"] == []


def test_status_names_a_tampered_and_a_missing_file(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve = env.root(env.locked) / "opt/gapseal/builds/server/cpu/bin/serve"
    lib = env.root(env.locked) / "opt/gapseal/builds/server/cpu/model-config.bin"
    original, lib_bytes = serve.read_bytes(), lib.read_bytes()
    try:
        serve.write_bytes(original.replace(b"sleep", b"nc -l"))  # same length: only --full can tell
        lib.unlink()
        quick = {h["name"]: h for h in _status(env, monkeypatch, capsys)["hosts"]}[env.locked.name]
        assert quick["problems"] == [f"missing: {lib}"]
        full = {h["name"]: h for h in _status(env, monkeypatch, capsys, "--full")["hosts"]}[env.locked.name]
        assert full["files"]["method"] == "sha256"
        assert full["problems"] == [f"missing: {lib}", f"changed: {serve}"]
    finally:
        serve.write_bytes(original)
        lib.write_bytes(lib_bytes)
        lib.chmod(0o644)


def test_uninstall_check_lists_what_it_would_remove_and_removes_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _installed_files(env.root(env.locked))
    rc = _gapseal(env, monkeypatch, "uninstall", "-i", "inventory.yml", "--check", "--limit", env.locked.name)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"{env.locked.name}: would remove lifecycle 1.0.0" in out
    assert f"remove {env.root(env.locked)}/{RECORD}" in out
    assert env.open_host.name not in out, "--limit applies"
    assert "check mode: nothing changed" in out
    assert _installed_files(env.root(env.locked)) == before


def test_an_uninstall_cut_short_says_what_stopped_it_and_keeps_the_record_for_the_rerun(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory of the install made read-only in the host's mount namespace: the run stops at the first file it
    cannot remove, names it, and leaves the record, so the next run (the test below) finishes the job."""
    locked = env.root(env.locked)
    bin_dir = locked / "opt/gapseal/builds/server/cpu/bin"
    env.locked.exec_in_sessions(["mount", "--bind", str(bin_dir), str(bin_dir)], check=True)
    try:
        env.locked.exec_in_sessions(["mount", "-o", "remount,ro,bind", str(bin_dir)], check=True)
        rc = _gapseal(env, monkeypatch, "uninstall", "-i", "inventory.yml", "--json", "--limit", env.locked.name)
        out, err = capsys.readouterr()
        doc = json.loads(out)
    finally:
        env.locked.exec_in_sessions(["umount", str(bin_dir)], check=True)
    assert rc == 1
    assert "Traceback" not in out + err
    (h,) = doc["hosts"]
    assert h["status"] == "failed"
    (problem,) = h["problems"]
    assert f"{bin_dir}/serve: Read-only file system; rerun uninstall to finish the job" in problem
    assert (locked / RECORD).is_file(), "the record goes last"
    assert (bin_dir / "serve").is_file()


def test_uninstall_removes_everything_but_an_operators_file_and_the_egress_lockdown(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = env.root(env.locked)
    stray = locked / "var/lib/gapseal/operator-notes.txt"  # not the install's: must survive, and be reported
    stray.write_text("keep me\n")
    link = locked / "opt/gapseal/builds/server/cpu/elsewhere"  # an operator's symlink out of the install: not followed
    outside = env.work / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep\n")
    link.symlink_to(outside)
    rc = _gapseal(env, monkeypatch, "uninstall", "-i", "inventory.yml", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0, doc
    assert (doc["kind"], doc["ok"], doc["check"]) == ("gapseal.UninstallReport", True, False)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert {h["status"] for h in doc["hosts"]} == {"removed"}
    assert f"remove venv {locked}/opt/gapseal/builds/server/cpu.venv" in hosts[env.locked.name]["actions"]
    assert hosts[env.locked.name]["kept"] == [
        f"{locked}/etc/gapseal/egress.nft (egress lockdown rules, kept: --remove-egress removes them)",
        f"{link} (not in the install record, so not known to be gapseal's: left alone)",
        f"{stray} (not in the install record, so not known to be gapseal's: left alone)",
    ]
    assert _tree(locked) == [
        "etc",
        "etc/gapseal",
        "etc/gapseal/egress.nft",
        "opt",
        "opt/gapseal",
        "opt/gapseal/builds",
        "opt/gapseal/builds/server",
        "opt/gapseal/builds/server/cpu",
        "opt/gapseal/builds/server/cpu/elsewhere",
        "var",
        "var/lib",
        "var/lib/gapseal",
        "var/lib/gapseal/operator-notes.txt",
    ]
    assert (outside / "precious.txt").read_text() == "keep\n"
    assert (hosts[env.open_host.name]["kept"], _tree(env.root(env.open_host))) == ([], []), "as before the install"
    assert env.locked.exec(["nft", "list", "table", "inet", "gapseal_egress"]).returncode == 0, "lockdown kept"


def test_status_after_uninstall_says_nothing_installed(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _status(env, monkeypatch, capsys)
    assert doc["ok"] is False
    for h in doc["hosts"]:
        assert (h["installed"], h["problems"]) == (False, [f"nothing installed ({env.root_of(h['name'])}/{RECORD})"])


def test_uninstall_again_is_a_no_op_and_remove_egress_opens_the_host(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = env.root(env.locked)
    before = _tree(locked)
    rc = _gapseal(env, monkeypatch, "uninstall", "-i", "inventory.yml", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [(h["status"], h["actions"]) for h in doc["hosts"]] == [("nothing installed", [])] * 2
    assert _tree(locked) == before
    # the operator takes the symlink away: the directories it kept go with the next run
    (locked / "opt/gapseal/builds/server/cpu/elsewhere").unlink()
    shutil.rmtree(env.work / "outside")
    rc = _gapseal(env, monkeypatch, "uninstall", "-i", "inventory.yml", "--remove-egress", "--limit", env.locked.name)
    out = capsys.readouterr().out
    assert rc == 0
    assert "nft delete table inet gapseal_egress" in out
    assert f"kept {locked}/var/lib/gapseal/operator-notes.txt (not in the install record" in out
    assert env.locked.exec(["nft", "list", "table", "inet", "gapseal_egress"]).returncode != 0
    assert _tree(locked) == ["var", "var/lib", "var/lib/gapseal", "var/lib/gapseal/operator-notes.txt"]


def test_a_host_no_variant_fits_fails_with_the_full_reason(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["-i", "inventory.yml", "--key", "team.pub", "--limit", env.open_host.name]
    rc = _gapseal(env, monkeypatch, "hosts", "detect", "--bundle", "unfit-1.0.0", *argv)
    out = capsys.readouterr().out
    assert rc == 1, out
    assert f"no variant fits: {env.open_host.name} (server)" in out
    rc = _gapseal(env, monkeypatch, "install", "unfit-1.0.0", *argv)
    out = capsys.readouterr().out
    assert rc == 1
    assert f"{env.open_host.name} failed at task 'Detect GPUs and CPU flags and choose each build's variant'" in out
    assert "gapseal_no_such_flag" in out, "the unmet requirement is named"


def test_unknown_tag_and_a_limit_matching_nothing_are_usage_errors(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["install", "site-1.0.0", "-i", "inventory.yml", "--key", "team.pub"]
    assert _gapseal(env, monkeypatch, *base, "--tags", "modles") == 2
    assert "valid tags: egress, hardware, images, models" in capsys.readouterr().err
    assert _gapseal(env, monkeypatch, *base, "--limit", "web*") == 2
    err = capsys.readouterr().err
    assert "matches no host" in err
    assert env.locked.name in err
