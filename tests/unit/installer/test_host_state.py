"""gapseal_host_state: one read-only look at a host that the later roles plan from, and the filters that use it.

The module runs as Ansible runs it (``python module.py args.json``); its survey of a file set must agree with
gapseal_files' own plan on every tree (the roles skip gapseal_files where the survey says a set is current), and it
must never write.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gapseal.resources import playbooks_dir
from tests.unit.installer.test_filters import F
from tests.unit.installer.test_modules import digest, entries, run_module

FILES = {"config.json": b'{"a": 1}\n', "sub/model.bin": b"\x00weights" * 1000, "bin/serve": b"#!/bin/sh\n"}
EXECUTABLE = ["bin/*"]


def _install(dest: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        (dest / rel).chmod(0o755 if rel.startswith("bin/") else 0o644)


def _same_size_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        content = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size, content)
    return out


def _remove_all(dest: Path, staging: Path) -> None:
    for p in dest.rglob("*"):
        if p.is_file():
            p.unlink()


def _symlink_in_place(dest: Path, staging: Path) -> None:
    (dest / "config.json").unlink()
    (dest / "config.json").symlink_to(dest / "sub/model.bin")


def _partial_in_staging(dest: Path, staging: Path) -> None:
    staging.mkdir()
    (staging / ("0" * 64 + ".partial")).write_bytes(b"half")


# Each case changes a correct install; the survey and gapseal_files' plan must say the same thing about it.
CASES: dict[str, Callable[[Path, Path], object]] = {
    "installed": lambda dest, staging: None,
    "nothing_installed": _remove_all,
    "same_size_tampered_weights": lambda dest, staging: _same_size_flip(dest / "sub/model.bin"),
    "truncated_config": lambda dest, staging: (dest / "config.json").write_bytes(b"{"),
    "executable_lost_its_mode": lambda dest, staging: (dest / "bin/serve").chmod(0o644),
    "extra_file": lambda dest, staging: (dest / "sub/planted.so").write_bytes(b"x"),
    "symlink_in_place_of_a_file": _symlink_in_place,
    "partial_left_in_staging": _partial_in_staging,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_survey_agrees_with_the_files_plan(tmp_path: Path, case: str) -> None:
    host = tmp_path / "host"
    dest, staging = host / "dest", host / "staging"
    _install(dest, FILES)
    CASES[case](dest, staging)
    file_set = {"dest": str(dest), "staging": str(staging), "files": entries(FILES), "executable": EXECUTABLE}
    before = _tree(host)
    state = run_module("gapseal_host_state", {"root": str(host), "file_sets": [file_set]}, tmp_path)
    assert _tree(host) == before, "the host state wrote something"
    survey = state["file_sets"][str(dest)]
    plan = run_module("gapseal_files", {**file_set, "phase": "plan"}, tmp_path, check=True)
    assert (sorted(survey["missing"]), survey["extra"], survey["stale_modes"]) == (
        sorted(plan["missing"]),
        plan["extra"],
        plan["stale_modes"],
    )
    assert survey["current"] is (case == "installed")
    assert survey["leftovers"] is (case == "partial_left_in_staging")


def test_a_same_size_tampered_file_is_missing_because_it_is_hashed(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    _install(dest, FILES)
    _same_size_flip(dest / "sub/model.bin")
    file_set = {"dest": str(dest), "files": entries(FILES), "executable": EXECUTABLE}
    state = run_module("gapseal_host_state", {"root": str(tmp_path), "file_sets": [file_set]}, tmp_path)
    assert state["file_sets"][str(dest)]["missing"] == [digest(FILES["sub/model.bin"])]


def test_builds_record_and_probes_are_read(tmp_path: Path) -> None:
    build = tmp_path / "builds/srv"
    (build / ".previous").mkdir(parents=True)
    (build / "current.json").write_text(json.dumps({"bundle": {"manifest_digest": "sha256:new"}, "backend": "cpu"}))
    (build / ".previous/meta.json").write_text(json.dumps({"bundle": {"manifest_digest": "sha256:old"}}))
    record = tmp_path / "installed.json"
    record.write_bytes(b'{"kind": "gapseal.InstalledRecord"}\n')
    args = {
        "root": str(tmp_path),
        "probes": True,
        "build_dirs": [str(build), str(tmp_path / "builds/never")],
        "record_path": str(record),
    }
    state = run_module("gapseal_host_state", args, tmp_path, check=True)
    assert state["changed"] is False
    assert state["builds"] == {
        str(build): {"current": "sha256:new", "previous": "sha256:old"},
        str(tmp_path / "builds/never"): {"current": None, "previous": None},
    }
    assert state["record_sha256"] == digest(record.read_bytes())
    assert state["probes"]["uname_m"]["stdout"].strip() == os.uname().machine
    assert set(state["probes"]) == {*_module().PROBE_COMMANDS, "cpuinfo"}
    assert run_module("gapseal_host_state", {"root": str(tmp_path)}, tmp_path)["record_sha256"] is None


def test_preflight_is_skipped_unless_asked_and_a_bad_file_set_fails(tmp_path: Path) -> None:
    state = run_module("gapseal_host_state", {"root": str(tmp_path)}, tmp_path)
    assert "preflight" not in state
    assert "probes" not in state
    bad = run_module("gapseal_host_state", {"root": str(tmp_path), "file_sets": [{"files": []}]}, tmp_path)
    assert bad["failed"] is True
    assert "malformed file set" in bad["msg"]


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("host_state", playbooks_dir() / "library/gapseal_host_state.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------------- filters

D = "sha256:" + "1" * 64
BUNDLE = {"manifest_digest": D}
VARIANT = {"name": "srv", "backend": "cpu", "dir": "/r/opt/gapseal/builds/srv/cpu", "files": [{"path": "bin/s"}]}
WHEELS = {**VARIANT, "files": [{"path": "bin/s"}, {"path": "wheels/a-1-py3-none-any.whl"}]}


def _state(current: bool, build_current: str | None = None) -> dict[str, Any]:
    return {
        "file_sets": {VARIANT["dir"]: {"current": current, "missing": [], "extra": [], "stale_modes": []}},
        "builds": {"/r/opt/gapseal/builds/srv": {"current": build_current, "previous": None}},
    }


@pytest.mark.parametrize(
    ("state", "variant", "pending"),
    [
        (_state(True), VARIANT, False),  # in place, nothing kept before: nothing to do
        (_state(True, D), VARIANT, False),  # in place, current.json is this bundle's
        (_state(False), VARIANT, True),  # a file missing or wrong
        (_state(True, "sha256:" + "2" * 64), VARIANT, True),  # another bundle runs now: keep it first
        (_state(True), WHEELS, True),  # pip checks the venv on every run
        ({}, VARIANT, True),  # no host state: the role plans as before
        ({"file_sets": {}, "builds": {}}, VARIANT, True),  # a set the host state did not read
    ],
)
def test_pending_variants(state: dict[str, Any], variant: dict[str, Any], pending: bool) -> None:
    assert F["gapseal_pending_variants"]([variant], state, BUNDLE) == ([variant] if pending else [])


def test_keep_is_needed_only_where_another_bundle_runs() -> None:
    other = "sha256:" + "2" * 64
    assert F["gapseal_keep_needed"]([VARIANT], _state(True, None), BUNDLE) == []
    assert F["gapseal_keep_needed"]([VARIANT], _state(True, D), BUNDLE) == []
    assert F["gapseal_keep_needed"]([VARIANT], _state(True, other), BUNDLE) == [VARIANT]
    assert F["gapseal_keep_needed"]([VARIANT], {}, BUNDLE) == [VARIANT]  # the fallback passes no host state


def test_pending_models_and_known_plan() -> None:
    models = [{"name": "m", "dir": "/r/m", "files": []}, {"name": "n", "dir": "/r/n", "files": []}]
    state = {"file_sets": {"/r/m": {"current": True}, "/r/n": {"current": False, "missing": [D]}}}
    assert F["gapseal_pending_models"](models, state) == [models[1]]
    assert F["gapseal_pending_models"](models, {}) == models
    assert F["gapseal_known_plan"](state, "/r/n") == {"current": False, "missing": [D]}
    assert F["gapseal_known_plan"](state, "/r/other") is None
    assert F["gapseal_known_plan"]({}, "/r/n") is None


def test_state_file_sets_cover_every_model_and_every_variant() -> None:
    models = [{"name": "m", "files": [{"path": "w.bin", "digest": D, "size": 1}]}]
    builds = [{"name": "srv", "variants": [{"backend": "cuda", "files": []}, {"backend": "cpu", "files": []}]}]
    sets = F["gapseal_state_file_sets"](models, builds, "/r/models", "/r/builds", "/r/.staging", ["bin/*"])
    assert [(s["dest"], s["executable"]) for s in sets] == [
        ("/r/models/m", []),
        ("/r/builds/srv/cuda", ["bin/*"]),
        ("/r/builds/srv/cpu", ["bin/*"]),
    ]
    assert F["gapseal_state_build_dirs"](builds, "/r/builds") == ["/r/builds/srv"]
    with pytest.raises(Exception, match="refusing"):
        F["gapseal_state_file_sets"]([], [{"name": "../x", "variants": []}], "/m", "/b", "/s", [])


def test_with_wheels_lists_each_variants_wheel_paths() -> None:
    assert F["gapseal_with_wheels"]([VARIANT, WHEELS]) == [{**WHEELS, "wheels": ["wheels/a-1-py3-none-any.whl"]}]


def test_record_bytes_are_what_the_record_module_writes(tmp_path: Path) -> None:
    """The record action skips the host when these bytes hash to the host state's digest: they must be the file."""
    spec = importlib.util.spec_from_file_location("record_mod", playbooks_dir() / "library/gapseal_record.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "installed.json"
    args = {
        "path": str(path),
        "root": str(tmp_path),
        "bundle": {"name": "b", "version": "1", "manifest_digest": D, "created": "2026-01-01T00:00:00Z"},
        "models": [{"name": "m", "dir": str(tmp_path / "m"), "files": entries({"w": b"w"})}],
        "builds": [],
        "services": [],
        "images": [],
    }
    assert run_module("gapseal_record", args, tmp_path)["changed"] is True
    assert module.record_bytes(args)[1] == path.read_bytes()


def test_files_units_and_nft_tables_are_read(tmp_path: Path) -> None:
    conf = tmp_path / "d/gapseal-egress.conf"
    conf.parent.mkdir()
    conf.parent.chmod(0o755)
    conf.write_text("[Service]\n")
    conf.chmod(0o644)
    (tmp_path / "link.conf").symlink_to(conf)
    args = {
        "root": str(tmp_path),
        "files_sha256": [str(conf), str(tmp_path / "link.conf"), str(tmp_path / "absent.conf")],
        "units": ["nftables.service"],
        "nft_tables": ["gapseal_egress"],
        "nft": str(tmp_path / "no-nft-here"),
    }
    state = run_module("gapseal_host_state", args, tmp_path)
    assert state["files_sha256"] == {
        str(conf): {"sha256": digest(b"[Service]\n"), "mode": "0644", "dir_mode": "0755"},
        str(tmp_path / "link.conf"): None,  # a link is not the drop-in the egress role writes
        str(tmp_path / "absent.conf"): None,
    }
    assert state["nft_tables"] == {"gapseal_egress": False}  # no nft: nothing loaded
    assert state["systemd"] is os.path.isdir("/run/systemd/system")
    if not state["systemd"]:
        assert state["units"] == {}


# ------------------------------------------------------------------------------- python modules (preflight)

NO_VENV = {"name": "gapseal_test_no_such_module", "package": "python3-venv", "purpose": "a virtual environment"}


def test_preflight_fails_naming_a_python_module_the_host_cannot_import_and_its_package(tmp_path: Path) -> None:
    pre = {"files": [], "arches": [], "min_python": "3.8", "reserve_bytes": 0}
    ok = run_module("gapseal_host_state", {"root": str(tmp_path), "preflight": pre}, tmp_path)
    assert "failed" not in ok
    with_venv = {**pre, "python_modules": F["gapseal_python_modules"]({"files": [{"path": "w.whl"}]}, [])}
    assert [m["name"] for m in with_venv["python_modules"]] == ["venv", "ensurepip"]
    assert "failed" not in run_module("gapseal_host_state", {"root": str(tmp_path), "preflight": with_venv}, tmp_path)
    bad = run_module(
        "gapseal_host_state", {"root": str(tmp_path), "preflight": {**pre, "python_modules": [NO_VENV]}}, tmp_path
    )
    assert bad["failed"] is True
    assert bad["failed_check"] == "preflight"
    assert "cannot import gapseal_test_no_such_module, needed for a virtual environment" in bad["msg"]
    assert "install python3-venv on the host (Debian, Ubuntu: apt-get install python3-venv)" in bad["msg"]
    assert bad["preflight"]["python"]  # the facts read so far come with the failure
    assert not (tmp_path / "var").exists()


def test_venv_is_required_only_where_the_install_makes_a_virtual_environment() -> None:
    modules = F["gapseal_python_modules"]
    assert modules({}, [{"name": "srv", "variants": [VARIANT]}]) == []
    assert modules({"files": []}, []) == []
    for wheels, builds, purpose in [
        ({"files": [{"path": "gapseal-1-py3-none-any.whl"}]}, [], "gapseal's own wheels"),
        ({}, [{"name": "srv", "variants": [VARIANT, WHEELS]}], "a build that carries wheels"),
    ]:
        needed = modules(wheels, builds)
        assert [(m["name"], m["package"]) for m in needed] == [("venv", "python3-venv"), ("ensurepip", "python3-venv")]
        assert all(purpose in m["purpose"] for m in needed)
