"""Integrity of installed files against installed.json: every tampering is named, a bad record is ``unknown``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors.integrity import collect_integrity, host_path, record_paths
from gapseal.installer.record import parse_record

DIGEST = "sha256:" + "ab" * 32


def make_install(root: Path, *, prefixed: bool = True) -> dict[str, Any]:
    """Install two model files and one build file under ``root`` and write their record, as the installer does."""
    base = str(root) if prefixed else ""
    files = {
        "opt/gapseal/models/minilm/model.safetensors": b"\x00weights" * 1000,
        "opt/gapseal/models/minilm/config.json": b'{"hidden_size": 384}\n',
        "opt/gapseal/builds/server/cpu/bin/llama-server": b"#!/bin/sh\nexit 0\n",
    }
    entries = []
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        entries.append(
            {
                "path": f"{base}/{rel}",
                "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "component": "model/minilm" if "models" in rel else "build/server/cpu",
            }
        )
    record = {
        "kind": "gapseal.InstalledRecord",
        "version": 1,
        "root": str(root) if prefixed else "/",
        "bundle": {"name": "demo", "version": "1.0.0", "manifest_digest": DIGEST},
        "models": {"minilm": {"dir": f"{base}/opt/gapseal/models/minilm"}},
        "variants": {"server": {"backend": "cpu", "arch": "amd64", "dir": f"{base}/opt/gapseal/builds/server/cpu"}},
        "services": [],
        "files": sorted(entries, key=lambda e: str(e["path"])),
    }
    path = root / "var/lib/gapseal/installed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def test_untouched_install_verifies(tmp_path: Path) -> None:
    make_install(tmp_path)
    f = collect_integrity(RawStore(), tmp_path)
    assert f.status == "ok"
    assert (f.checked, f.ok, f.failures) == (3, 3, [])
    assert (f.bundle_name, f.bundle_version, f.manifest_digest) == ("demo", "1.0.0", DIGEST)
    assert f.variants == ["server:cpu/amd64"]
    assert f.record_present is True
    record_bytes = (tmp_path / "var/lib/gapseal/installed.json").read_bytes()
    assert f.record_sha256 == hashlib.sha256(record_bytes).hexdigest()
    assert all(x.state == "ok" and x.actual_sha256 == x.expected_sha256 for x in f.files)


def test_paths_without_the_root_prefix_are_taken_under_root(tmp_path: Path) -> None:
    make_install(tmp_path, prefixed=False)
    f = collect_integrity(RawStore(), tmp_path)
    assert (f.checked, f.ok) == (3, 3)
    assert f.files[0].path.startswith("/opt/gapseal/")


@pytest.mark.parametrize(
    ("tamper", "state"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-1] + b"X"), "modified"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\n"), "modified"),
        (lambda p: p.unlink(), "missing"),
        (lambda p: (p.unlink(), p.symlink_to("/etc/hostname")), "not_regular"),
        (lambda p: (p.unlink(), p.mkdir()), "not_regular"),
    ],
    ids=["same-size-edit", "appended", "deleted", "replaced-by-symlink", "replaced-by-directory"],
)
def test_tampered_file_is_named(tmp_path: Path, tamper: Any, state: str) -> None:
    make_install(tmp_path)
    victim = tmp_path / "opt/gapseal/models/minilm/config.json"
    tamper(victim)
    f = collect_integrity(RawStore(), tmp_path)
    assert f.status == "ok"
    assert f.failures == [f"{state}: {victim}"]
    assert (f.checked, f.ok) == (3, 2)
    bad = next(x for x in f.files if x.path == str(victim))
    assert bad.state == state


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(kind="something.else"), "kind is 'something.else', expected 'gapseal.InstalledRecord'"),
        (lambda r: r.update(version=2), "record version 2 is not supported"),
        (lambda r: r["bundle"].update(manifest_digest="md5:00"), "bundle.manifest_digest"),
        (lambda r: r["files"].reverse(), "files: must be sorted by path"),
        (lambda r: r.update(extra=1), "extra"),
    ],
    ids=["wrong-kind", "future-version", "bad-digest", "unsorted", "unknown-field"],
)
def test_bad_record_makes_integrity_unknown(tmp_path: Path, mutate: Any, message: str) -> None:
    record = make_install(tmp_path)
    mutate(record)
    (tmp_path / "var/lib/gapseal/installed.json").write_text(json.dumps(record))
    f = collect_integrity(RawStore(), tmp_path)
    assert f.status == "unknown"
    assert f.reason is not None
    assert message in f.reason
    assert f.files == []


def test_record_that_is_not_json_is_unknown(tmp_path: Path) -> None:
    p = tmp_path / "var/lib/gapseal/installed.json"
    p.parent.mkdir(parents=True)
    p.write_text("{truncated")
    f = collect_integrity(RawStore(), tmp_path)
    assert f.status == "unknown"
    assert f.reason is not None
    assert "not JSON" in f.reason


def test_missing_record_is_unknown(tmp_path: Path) -> None:
    f = collect_integrity(RawStore(), tmp_path)
    assert f.status == "unknown"
    assert f.record_present is False
    assert f.reason == f"no readable install record at {tmp_path}/var/lib/gapseal/installed.json"


def test_record_paths_feed_the_storage_collector(tmp_path: Path) -> None:
    record = parse_record(json.dumps(make_install(tmp_path)).encode())
    assert record_paths(tmp_path, record) == [
        (tmp_path / "opt/gapseal/models/minilm", "model"),
        (tmp_path / "opt/gapseal/builds/server/cpu", "install"),
    ]
    assert record_paths(tmp_path, None) == []


@pytest.mark.parametrize(
    ("root", "recorded", "expected"),
    [
        ("/", "/opt/x", "/opt/x"),
        ("/srv/host1", "/srv/host1/opt/x", "/srv/host1/opt/x"),
        ("/srv/host1", "/opt/x", "/srv/host1/opt/x"),
        ("/srv/host1", "/srv/host10/opt/x", "/srv/host1/srv/host10/opt/x"),
    ],
)
def test_host_path(root: str, recorded: str, expected: str) -> None:
    assert host_path(Path(root), recorded) == Path(expected)
