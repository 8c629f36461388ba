"""The gapseal_uninstall and gapseal_status modules run as Ansible runs them (``python module.py args.json``).

What the namespace/systemd host tests cannot easily stage: a record that lies (a path outside the install root) must
remove nothing at all, a symlink where gapseal makes a directory is never followed, a host an older uninstall left
half-clean (no record, venvs and rollback copies left) is finished, a run cut short is finished by the next, and a
file changed after the install is reported by the status module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.installer.test_modules import digest, run_module


def _install(root: Path, files: dict[str, bytes], extra_record_files: tuple[dict[str, Any], ...] = ()) -> Path:
    entries: list[dict[str, Any]] = []
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        entries.append({"path": str(p), "digest": digest(data), "size": len(data), "component": "build/x/cpu"})
    entries += list(extra_record_files)
    record = {
        "kind": "gapseal.InstalledRecord",
        "version": 1,
        "root": str(root),
        "bundle": {"name": "b", "version": "1.0.0", "manifest_digest": digest(b"m")},
        "models": {},
        "variants": {"x": {"backend": "cpu", "arch": "amd64", "dir": str(root / "opt/gapseal/builds/x/cpu")}},
        "services": [],
        "files": sorted(entries, key=lambda f: str(f["path"])),
    }
    path = root / "var/lib/gapseal/installed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def _args(root: Path, record: Path) -> dict[str, Any]:
    return {
        "path": str(record),
        "root": str(root),
        "egress_rules_path": str(root / "etc/gapseal/egress.nft"),
        "builds_dir": str(root / "opt/gapseal/builds"),
        "models_dir": str(root / "var/lib/gapseal/models"),
        "unit_dir": str(root / "etc/systemd/system"),
        "self_venv": str(root / "opt/gapseal/venv"),
        "self_wheels_dir": str(root / "opt/gapseal/wheels"),
        "staging": str(root / "var/lib/gapseal/.staging"),
        "images_layouts": str(root / "var/lib/gapseal/images"),
    }


def _venv(path: Path) -> None:
    """A real virtual environment, as the runtime and self roles make them (pip left out: faster, same shape)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)


def _tree(root: Path) -> list[str]:
    """Every path under root, directories included, symlinks not followed."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _everything_else(root: Path) -> None:
    """What a full install leaves beside the recorded files: a build's venv, its rollback copy of the version
    before (build, venv, unit), current.json, gapseal's own venv and wheels, a staged partial, the image layout."""
    build = root / "opt/gapseal/builds/x"
    _venv(build / "cpu.venv")
    (build / "current.json").write_text('{"backend": "cpu"}\n')
    (build / ".previous/build/bin").mkdir(parents=True)
    (build / ".previous/build/bin/serve").write_text("#!/bin/sh\n")
    _venv(build / ".previous/build.venv")
    (build / ".previous/units").mkdir()
    (build / ".previous/units/gapseal-x.service").write_text("[Service]\n")
    (build / ".previous/meta.json").write_text("{}\n")
    _venv(root / "opt/gapseal/venv")
    (root / "opt/gapseal/wheels").mkdir(parents=True)
    (root / "opt/gapseal/wheels/gapseal-1.0.0-py3-none-any.whl").write_bytes(b"PK")
    (root / "var/lib/gapseal/.staging").mkdir(parents=True)
    (root / "var/lib/gapseal/.staging" / ("ab" * 32 + ".partial")).write_bytes(b"half")
    blobs = root / "var/lib/gapseal/images/blobs/sha256"
    blobs.mkdir(parents=True)
    (blobs / ("cd" * 32)).write_bytes(b"layer")
    (root / "var/lib/gapseal/images/oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "var/lib/gapseal/images/index.json").write_text('{"schemaVersion":2,"manifests":[]}')
    (root / "var/lib/gapseal/.installed.k2j4x.tmp").write_text("{")  # gapseal_record's write, cut short


def test_a_record_naming_a_path_outside_the_root_removes_nothing(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "zz-precious.txt"  # sorted after the install's own files
    outside.write_text("keep\n")
    record = _install(
        root,
        {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"},
        ({"path": str(outside), "digest": digest(b"keep\n"), "size": 5, "component": "build/x/cpu"},),
    )
    result = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert result["failed"] is True
    assert "outside" in result["msg"]
    assert outside.read_text() == "keep\n"
    assert (root / "opt/gapseal/builds/x/cpu/bin/serve").exists(), "stopped before removing anything"
    assert record.exists()


@pytest.mark.parametrize(
    ("case", "lie"),
    [
        ("a file in no recorded directory", {"files": "etc/shadow"}),
        ("a variant outside the build directory", {"variant_dir": "srv/www"}),
        ("a service name that climbs out of /var/lib", {"service": ("x/../../..", "gapseal-x.service")}),
        ("a unit that is not gapseal's", {"service": ("x", "sshd.service")}),
    ],
)
def test_a_record_naming_a_path_the_roles_never_write_removes_nothing(
    tmp_path: Path, case: str, lie: dict[str, Any]
) -> None:
    """Installed at /, everything is below the root: the record's paths must also be where the roles put them."""
    root = tmp_path / "root"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"})
    victim = root / "etc/shadow"
    victim.parent.mkdir(parents=True)
    victim.write_text("keep\n")
    doc = json.loads(record.read_text())
    if "files" in lie:
        doc["files"].append({"path": str(root / lie["files"]), "digest": digest(b"keep\n"), "size": 5})
    if "variant_dir" in lie:
        doc["variants"]["x"]["dir"] = str(root / lie["variant_dir"])
    if "service" in lie:
        name, unit = lie["service"]
        doc["services"] = [{"name": name, "unit": str(root / "etc/systemd/system" / unit), "state": "enabled"}]
    record.write_text(json.dumps(doc))
    result = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert result["failed"] is True, case
    assert "nothing removed" in result["msg"]
    assert victim.read_text() == "keep\n"
    assert (root / "opt/gapseal/builds/x/cpu/bin/serve").exists()
    assert record.exists()


def test_uninstall_check_mode_then_real_then_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"})
    planned = run_module("gapseal_uninstall", _args(root, record), tmp_path, check=True)
    assert planned["changed"] is True
    assert record.exists()
    done = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert done["actions"] == [
        f"remove {root}/opt/gapseal/builds/x/cpu/bin/serve",
        f"remove {record}",
        f"remove dir {root}/opt/gapseal/builds/x/cpu/bin",
        f"remove dir {root}/opt/gapseal/builds/x/cpu",
        f"remove dir {root}/opt/gapseal/builds/x",
        f"remove dir {root}/opt/gapseal/builds",
        f"remove dir {root}/opt/gapseal",
        f"remove dir {root}/opt",
        f"remove dir {root}/var/lib/gapseal",
        f"remove dir {root}/var/lib",
        f"remove dir {root}/var",
    ]
    assert planned["actions"][:2] == done["actions"][:2]
    assert (_tree(root), done["kept"]) == ([], [])
    again = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert (again["changed"], again["actions"], again["kept"]) == (False, [], [])


def test_uninstall_removes_venvs_rollback_copies_own_venv_staging_and_layout_and_keeps_an_operators_file(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"})
    _everything_else(root)
    notes = root / "opt/gapseal/builds/x/cpu/operator-notes.txt"  # not the install's: stays, and its directories
    notes.write_text("keep me\n")
    (root / "opt/gapseal/builds/x/cpu/bin/.serve.gapseal-tmp").write_bytes(
        b"#!"
    )  # a copy across filesystems, cut short
    planned = run_module("gapseal_uninstall", _args(root, record), tmp_path, check=True)
    assert f"remove venv {root}/opt/gapseal/venv" in planned["actions"]
    assert (root / "opt/gapseal/venv/pyvenv.cfg").exists(), "check mode removes nothing"
    done = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    build = f"{root}/opt/gapseal/builds/x"
    for action in (
        f"remove venv {build}/cpu.venv",
        f"remove rollback copy {build}/.previous",
        f"remove {build}/current.json",
        f"remove venv {root}/opt/gapseal/venv",
        f"remove {root}/opt/gapseal/wheels/gapseal-1.0.0-py3-none-any.whl",
        f"remove {root}/var/lib/gapseal/.staging/{'ab' * 32}.partial",
        f"remove {root}/var/lib/gapseal/images/blobs/sha256/{'cd' * 32}",
        f"remove {root}/var/lib/gapseal/images/index.json",
        f"remove {root}/opt/gapseal/builds/x/cpu/bin/.serve.gapseal-tmp",
        f"remove {root}/var/lib/gapseal/.installed.k2j4x.tmp",
    ):
        assert action in done["actions"]
    assert _tree(root) == [
        "opt",
        "opt/gapseal",
        "opt/gapseal/builds",
        "opt/gapseal/builds/x",
        "opt/gapseal/builds/x/cpu",
        "opt/gapseal/builds/x/cpu/operator-notes.txt",
    ]
    assert done["kept"] == [f"{notes} (not in the install record, so not known to be gapseal's: left alone)"]
    again = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert (again["changed"], again["kept"]) == (False, done["kept"])


def test_a_symlink_where_gapseal_makes_a_venv_is_left_and_its_target_untouched(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "operators-venv"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"})
    _venv(elsewhere)
    (root / "opt/gapseal/venv").parent.mkdir(parents=True, exist_ok=True)
    (root / "opt/gapseal/venv").symlink_to(elsewhere)
    (root / "opt/gapseal/builds/x/cpu.venv").symlink_to(elsewhere)
    done = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert (elsewhere / "pyvenv.cfg").is_file()
    assert (root / "opt/gapseal/venv").is_symlink()
    assert (root / "opt/gapseal/builds/x/cpu.venv").is_symlink()
    why = "gapseal makes a virtual environment here, but this is not one: left alone"
    assert done["kept"] == [f"{root}/opt/gapseal/builds/x/cpu.venv ({why})", f"{root}/opt/gapseal/venv ({why})"]
    assert not any("venv" in a for a in done["actions"])


def test_a_host_an_older_uninstall_left_half_clean_is_finished(tmp_path: Path) -> None:
    """No record (an older uninstall removed it and the listed files), but the venvs and rollback copy stayed."""
    root = tmp_path / "root"
    (root / "opt/gapseal/builds/x").mkdir(parents=True)
    _everything_else(root)
    done = run_module("gapseal_uninstall", _args(root, root / "var/lib/gapseal/installed.json"), tmp_path)
    assert done["changed"] is True
    assert done["ansible_facts"]["gapseal_uninstall"]["installed"] is False
    assert (_tree(root), done["kept"]) == ([], [])


def test_remove_egress_takes_the_rules_and_a_cut_short_write_of_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"})
    rules = root / "etc/gapseal/egress.nft"
    rules.parent.mkdir(parents=True)
    rules.write_text("table inet gapseal_egress {}\n")
    (rules.parent / ".egress.q8z1.tmp").write_text("table inet")
    kept = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert kept["kept"] == [
        f"{rules.parent}/.egress.q8z1.tmp (not in the install record, so not known to be gapseal's: left alone)",
        f"{rules} (egress lockdown rules, kept: --remove-egress removes them)",
    ]
    args = {**_args(root, record), "remove_egress": True, "nft": str(tmp_path / "no-nft-here")}
    done = run_module("gapseal_uninstall", args, tmp_path)
    assert done["actions"] == [
        f"remove {rules}",
        f"remove {rules.parent}/.egress.q8z1.tmp",
        f"remove dir {root}/etc/gapseal",
        f"remove dir {root}/etc",
    ]
    assert (_tree(root), done["kept"]) == ([], [])


def test_a_run_cut_short_is_finished_by_the_next(tmp_path: Path) -> None:
    """The state a kill leaves part-way (some listed files gone, a venv half-removed, a rollback copy half-written):
    the record is still there, so the rerun knows everything and finishes."""
    root = tmp_path / "root"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n", "opt/gapseal/builds/x/cpu/a": b"a"})
    _everything_else(root)
    (root / "opt/gapseal/builds/x/cpu/bin/serve").unlink()
    for p in (root / "opt/gapseal/builds/x/cpu.venv/bin").iterdir():
        p.unlink()
    for p in (root / "opt/gapseal/venv").iterdir():  # a venv removal cut short: its mark, pyvenv.cfg, goes last
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.name != "pyvenv.cfg":
            p.unlink()
    (root / "opt/gapseal/builds/x/.previous.new/build").mkdir(parents=True)
    done = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert f"remove rollback copy {root}/opt/gapseal/builds/x/.previous.new" in done["actions"]
    assert (_tree(root), done["kept"]) == ([], [])


def test_status_tells_a_changed_file_by_size_and_a_same_size_edit_only_with_full(tmp_path: Path) -> None:
    root = tmp_path / "root"
    record = _install(root, {"a/one": b"1111", "a/two": b"2222"})
    (root / "a/one").write_bytes(b"9999")  # same size
    (root / "a/two").write_bytes(b"22")
    quick = run_module("gapseal_status", {"path": str(record)}, tmp_path)["ansible_facts"]["gapseal_status"]
    assert quick["files"] == {"total": 2, "ok": 1, "missing": [], "changed": [str(root / "a/two")], "unreadable": []}
    full = run_module("gapseal_status", {"path": str(record), "full": True}, tmp_path)["ansible_facts"][
        "gapseal_status"
    ]
    assert full["files"]["changed"] == [str(root / "a/one"), str(root / "a/two")]
    assert full["check"] == "sha256"


def test_an_enable_link_left_without_its_unit_file_is_removed(tmp_path: Path) -> None:
    """The unit file went before disable could run (an operator, a cut-short run): its wants link still points at it."""
    root = tmp_path / "root"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"})
    unit = root / "etc/systemd/system/gapseal-x.service"
    doc = json.loads(record.read_text())
    doc["services"] = [{"name": "x", "unit": str(unit), "state": "enabled"}]
    record.write_text(json.dumps(doc))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "gapseal-x.service").symlink_to(unit)
    (wants / "other.service").symlink_to(root / "etc/systemd/system/other.service")  # not gapseal's: stays
    done = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert f"remove {wants}/gapseal-x.service" in done["actions"]
    assert _tree(root / "etc") == [
        "systemd",
        "systemd/system",
        "systemd/system/multi-user.target.wants",
        "systemd/system/multi-user.target.wants/other.service",
    ]
