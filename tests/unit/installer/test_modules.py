"""gapseal's Ansible modules run as Ansible runs them: ``python module.py args.json`` (no mock of AnsibleModule)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gapseal.installer.record import InstalledRecord, parse_record
from gapseal.resources import playbooks_dir

LIBRARY = playbooks_dir() / "library"


def run_module(name: str, args: dict[str, Any], tmp_path: Path, *, check: bool = False) -> dict[str, Any]:
    argfile = tmp_path / f"{name}-args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check}}))
    proc = subprocess.run(
        [sys.executable, str(LIBRARY / f"{name}.py"), str(argfile)], capture_output=True, text=True, check=False
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def entries(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"path": p, "digest": digest(d), "size": len(d)} for p, d in files.items()]


def stage(staging: Path, files: dict[str, bytes]) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    for data in files.values():
        (staging / (hashlib.sha256(data).hexdigest() + ".partial")).write_bytes(data)


FILES = {"config.json": b'{"a": 1}\n', "sub/model.bin": b"\x00weights" * 1000, "bin/serve": b"#!/bin/sh\n"}


def test_files_plan_lists_missing_then_commit_installs_verified(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    args = {"dest": str(dest), "staging": str(staging), "files": entries(FILES), "executable": ["bin/*"]}
    plan = run_module("gapseal_files", {**args, "phase": "plan"}, tmp_path)
    assert plan["changed"] is True
    assert sorted(plan["missing"]) == sorted(digest(d) for d in FILES.values())
    stage(staging, FILES)
    commit = run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    assert commit["changed"] is True, commit
    assert sorted(commit["installed"]) == sorted(FILES)
    for rel, data in FILES.items():
        assert (dest / rel).read_bytes() == data
    assert (dest / "bin/serve").stat().st_mode & 0o777 == 0o755
    assert (dest / "config.json").stat().st_mode & 0o777 == 0o644
    assert not staging.exists()
    again = run_module("gapseal_files", {**args, "phase": "plan"}, tmp_path)
    assert again["changed"] is False
    assert again["missing"] == []


def test_files_commit_refuses_a_blob_that_does_not_match_its_digest(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    files = {"model.bin": b"the real weights"}
    args = {"dest": str(dest), "staging": str(staging), "files": entries(files)}
    staging.mkdir()
    (staging / (hashlib.sha256(files["model.bin"]).hexdigest() + ".partial")).write_bytes(b"the evil weights")
    result = run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    assert result["failed"] is True
    assert "model.bin: content on the host does not match the bundle" in result["msg"]
    assert not (dest / "model.bin").exists()
    assert list(staging.iterdir()) == []  # the bad blob is deleted


def test_files_commit_refuses_a_truncated_transfer(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    files = {"model.bin": b"0123456789" * 100}
    staging.mkdir()
    (staging / (hashlib.sha256(files["model.bin"]).hexdigest() + ".partial")).write_bytes(files["model.bin"][:500])
    result = run_module(
        "gapseal_files",
        {"dest": str(dest), "staging": str(staging), "files": entries(files), "phase": "commit"},
        tmp_path,
    )
    assert result["failed"] is True
    assert "(1000 bytes), got" in result["msg"]
    assert "(500 bytes)" in result["msg"]


def test_files_plan_removes_leftover_partials_and_repairs_a_tampered_file(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    args = {"dest": str(dest), "staging": str(staging), "files": entries(FILES)}
    stage(staging, FILES)
    run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    (dest / "config.json").write_bytes(b'{"a": 2}\n')  # tampered on the host
    (dest / "extra.txt").write_bytes(b"not in the bundle")
    staging.mkdir()
    (staging / "deadbeef.partial").write_bytes(b"left by a killed run")
    plan = run_module("gapseal_files", {**args, "phase": "plan"}, tmp_path)
    assert plan["missing"] == [digest(FILES["config.json"])]
    assert plan["extra"] == ["extra.txt"]
    assert plan["removed_partials"] == ["deadbeef.partial"]
    assert not (staging / "deadbeef.partial").exists()


def test_files_check_mode_changes_nothing(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    staging.mkdir()
    (staging / "old.partial").write_bytes(b"x")
    args = {"dest": str(dest), "staging": str(staging), "files": entries(FILES), "phase": "plan"}
    result = run_module("gapseal_files", args, tmp_path, check=True)
    assert result["changed"] is True
    assert not dest.exists()
    assert (staging / "old.partial").exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../escape", "must not contain empty, '.' or '..' parts"),
        ("/etc/passwd", "must be a relative posix path"),
        ("a//b", "must not contain empty, '.' or '..' parts"),
        ("a/./b", "must not contain empty, '.' or '..' parts"),
    ],
)
def test_files_refuse_paths_outside_dest(tmp_path: Path, path: str, message: str) -> None:
    files = [{"path": path, "digest": digest(b"x"), "size": 1}]
    result = run_module(
        "gapseal_files", {"dest": str(tmp_path / "d"), "staging": str(tmp_path / "s"), "files": files}, tmp_path
    )
    assert result["failed"] is True
    assert message in result["msg"]


def test_files_refuse_a_malformed_digest_and_root_dest(tmp_path: Path) -> None:
    bad = [{"path": "a", "digest": "md5:abc", "size": 1}]
    result = run_module(
        "gapseal_files", {"dest": str(tmp_path), "staging": str(tmp_path / "s"), "files": bad}, tmp_path
    )
    assert "is not sha256:<64 hex>" in result["msg"]
    result = run_module("gapseal_files", {"dest": "/", "staging": str(tmp_path / "s"), "files": []}, tmp_path)
    assert "must be an absolute path below /" in result["msg"]


def test_record_module_writes_a_document_the_record_model_accepts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    args = {
        "path": str(root / "var/lib/gapseal/installed.json"),
        "root": str(root),
        "bundle": {"name": "b", "version": "1.0.0", "manifest_digest": digest(b"m"), "created": "2026-01-01T00:00:00Z"},
        "models": [{"name": "m", "dir": str(root / "models/m"), "files": entries({"w.bin": b"w", "a.json": b"{}"})}],
        "builds": [
            {
                "name": "srv",
                "backend": "cpu",
                "arch": "amd64",
                "dir": str(root / "builds/srv/cpu"),
                "files": entries({"bin/s": b"s"}),
            }
        ],
        "services": [
            {
                "name": "api",
                "unit": str(root / "etc/systemd/system/gapseal-api.service"),
                "state": "not started: systemd is not running",
            }
        ],
    }
    first = run_module("gapseal_record", args, tmp_path)
    assert first["changed"] is True
    record = parse_record((root / "var/lib/gapseal/installed.json").read_bytes())
    assert isinstance(record, InstalledRecord)
    assert [f.path for f in record.files] == sorted(f.path for f in record.files)
    assert record.variants["srv"].backend == "cpu"
    assert {f.component for f in record.files} == {"model/m", "build/srv/cpu"}
    assert run_module("gapseal_record", args, tmp_path)["changed"] is False  # same bytes: idempotent
    assert [p.name for p in (root / "var/lib/gapseal").iterdir()] == ["installed.json"]  # no temp file left


def test_preflight_fails_with_the_reason_when_space_is_short(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    files = [{"path": "var/lib/gapseal/models/m/huge.bin", "size": 2 * free}]
    result = run_module("gapseal_host_state", {"root": str(tmp_path / "root"), "preflight": {"files": files}}, tmp_path)
    assert result["failed"] is True
    assert result["failed_check"] == "preflight"
    assert "not enough free space for the install" in result["msg"]
    assert str(tmp_path) in result["msg"]
    assert result["preflight"]["needed_bytes"] == 2 * free


def test_preflight_counts_only_files_not_already_there(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "big").parent.mkdir(parents=True)
    (root / "big").write_bytes(b"x" * 10)
    files = [{"path": "big", "size": 10}, {"path": "new", "size": 5}]
    result = run_module(
        "gapseal_host_state", {"root": str(root), "preflight": {"files": files, "arches": ["amd64", "arm64"]}}, tmp_path
    )
    assert result.get("failed") is not True, result
    assert result["preflight"]["needed_bytes"] == 5


def test_preflight_refuses_an_architecture_the_bundle_has_no_build_for(tmp_path: Path) -> None:
    result = run_module("gapseal_host_state", {"root": str(tmp_path), "preflight": {"arches": ["riscv64"]}}, tmp_path)
    assert result["failed"] is True
    assert "has no build in this bundle (bundle has: riscv64)" in result["msg"]


def test_egress_module_refuses_a_ruleset_nft_rejects(tmp_path: Path) -> None:
    result = run_module(
        "gapseal_egress",
        {
            "rules": "table inet x { chain output { type filter hook output priority filter; policy maybe; } }\n",
            "path": str(tmp_path / "egress.nft"),
            "phase": "track",
        },
        tmp_path,
        check=True,
    )
    assert result["failed"] is True
    assert "does not pass nft -c" in result["msg"]
    assert not (tmp_path / "egress.nft").exists()


def _batch(staging: Path, members: dict[str, bytes]) -> Path:
    import io
    import tarfile

    staging.mkdir(parents=True, exist_ok=True)
    path = staging / "batch-1-0.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_files_commit_unpacks_a_batch_of_small_blobs(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    files = {"a.json": b"{}", "b.txt": b"bee"}
    batch = _batch(staging, {hashlib.sha256(d).hexdigest() + ".partial": d for d in files.values()})
    args = {"dest": str(dest), "staging": str(staging), "files": entries(files), "batches": [str(batch)]}
    result = run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    assert result["installed"] == ["a.json", "b.txt"], result
    assert (dest / "b.txt").read_bytes() == b"bee"
    assert not staging.exists()


def test_files_commit_refuses_a_batch_with_a_foreign_member(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    files = {"a.json": b"{}"}
    batch = _batch(staging, {"../../etc/evil": b"x"})
    args = {"dest": str(dest), "staging": str(staging), "files": entries(files), "batches": [str(batch)]}
    result = run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    assert result["failed"] is True
    assert "unexpected member '../../etc/evil'" in result["msg"]
    assert not (tmp_path / "etc").exists()


def _inline(files: dict[str, bytes]) -> dict[str, str]:
    import base64

    return {hashlib.sha256(d).hexdigest(): base64.b64encode(d).decode() for d in files.values()}


def test_files_commit_installs_small_blobs_sent_inline(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"  # neither exists: the commit makes them
    files = {"a.json": b"{}", "sub/b.txt": b"bee"}
    args = {"dest": str(dest), "staging": str(staging), "files": entries(files), "inline": _inline(files)}
    result = run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    assert result["installed"] == ["a.json", "sub/b.txt"], result
    assert (dest / "sub/b.txt").read_bytes() == b"bee"
    assert not staging.exists()
    # the blobs' content is not echoed back in the result (no_log): only their digests
    assert set(result["invocation"]["module_args"]["inline"].values()) == {"VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}


def test_files_commit_refuses_an_inline_blob_that_does_not_match_its_digest(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    files = {"model.bin": b"the real weights"}
    forged = {
        k: _inline({"x": b"the evil weights"})[hashlib.sha256(b"the evil weights").hexdigest()] for k in _inline(files)
    }
    args = {"dest": str(dest), "staging": str(staging), "files": entries(files), "inline": forged}
    result = run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    assert result["failed"] is True
    assert "model.bin: content on the host does not match the bundle" in result["msg"]
    assert not (dest / "model.bin").exists()


def test_files_commit_refuses_an_inline_blob_it_is_not_missing(tmp_path: Path) -> None:
    dest, staging = tmp_path / "dest", tmp_path / "staging"
    files = {"a.json": b"{}"}
    args = {"dest": str(dest), "staging": str(staging), "files": entries(files), "inline": _inline({"x": b"other"})}
    result = run_module("gapseal_files", {**args, "phase": "commit"}, tmp_path)
    assert result["failed"] is True
    assert "is not one this commit is missing" in result["msg"]
    assert not dest.exists() or not any(dest.iterdir())
