"""The gapseal_uninstall and gapseal_status modules run as Ansible runs them (``python module.py args.json``).

What the namespace/systemd host tests cannot easily stage: a record that lies (a path outside the install root) must
remove nothing at all, and a file changed after the install is reported by the status module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    return {"path": str(record), "root": str(root), "egress_rules_path": str(root / "etc/gapseal/egress.nft")}


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


def test_uninstall_check_mode_then_real_then_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    record = _install(root, {"opt/gapseal/builds/x/cpu/bin/serve": b"#!/bin/sh\n"})
    planned = run_module("gapseal_uninstall", _args(root, record), tmp_path, check=True)
    assert planned["changed"] is True
    assert record.exists()
    done = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert done["actions"] == [
        f"remove {root}/opt/gapseal/builds/x/cpu/bin/serve",
        f"remove dir {root}/opt/gapseal/builds/x/cpu/bin",
        f"remove dir {root}/opt/gapseal/builds/x/cpu",
        f"remove dir {root}/opt/gapseal/builds/x",
        f"remove dir {root}/opt/gapseal/builds",
        f"remove {record}",
    ]
    assert planned["actions"][0] == done["actions"][0]
    again = run_module("gapseal_uninstall", _args(root, record), tmp_path)
    assert (again["changed"], again["actions"]) == (False, [])


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
