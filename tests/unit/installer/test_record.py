from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gapseal.errors import InstallError
from gapseal.installer.record import load_record, parse_record

D = "sha256:" + "ab" * 32


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "gapseal.InstalledRecord",
        "version": 1,
        "root": "/",
        "bundle": {"name": "b", "version": "1.0.0", "manifest_digest": D},
        "models": {"m": {"dir": "/var/lib/gapseal/models/m"}},
        "variants": {"s": {"backend": "cpu", "arch": "amd64", "dir": "/opt/gapseal/builds/s/cpu"}},
        "files": [
            {"path": "/a", "digest": D, "size": 1, "component": "model/m"},
            {"path": "/b", "digest": D, "size": 2, "component": "build/s/cpu"},
        ],
    }
    base.update(over)
    return base


def test_a_good_record_parses() -> None:
    r = parse_record(json.dumps(doc()).encode())
    assert r.variants["s"].backend == "cpu"
    assert [f.path for f in r.files] == ["/a", "/b"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "gapseal.Other"}, "kind is 'gapseal.Other', expected 'gapseal.InstalledRecord'"),
        ({"version": 2}, "record version 2 is not supported"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
        ({"bundle": {"name": "b", "version": "1", "manifest_digest": "md5:x"}}, "bundle.manifest_digest"),
        (
            {
                "files": [
                    {"path": "/b", "digest": D, "size": 1, "component": "x"},
                    {"path": "/a", "digest": D, "size": 1, "component": "x"},
                ]
            },
            "files: must be sorted by path",
        ),
        (
            {
                "files": [
                    {"path": "/a", "digest": D, "size": 1, "component": "x"},
                    {"path": "/a", "digest": D, "size": 1, "component": "x"},
                ]
            },
            "a path is listed twice",
        ),
        ({"variants": {"s": {"backend": "tpu", "arch": "amd64", "dir": "/x"}}}, "variants.s.backend"),
    ],
)
def test_bad_records_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InstallError) as e:
        parse_record(json.dumps(doc(**change)).encode(), where="host1:installed.json")
    assert message in e.value.message
    assert e.value.message.startswith("host1:installed.json")


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="not JSON"):
        parse_record(b"{nope")
    with pytest.raises(InstallError, match="cannot read the install record"):
        load_record(tmp_path / "installed.json")
