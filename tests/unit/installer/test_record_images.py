"""installed.json's images (written by the images role): parsed, checked, and optional for older records."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gapseal.errors import InstallError
from gapseal.installer.record import parse_record
from tests.unit.installer.test_record import D, doc

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "playbooks" / "library"))
from gapseal_record import build_record  # type: ignore[import-not-found]  # noqa: E402

IMAGE = {"name": "busybox", "digest": D, "reference": f"10.0.0.1:5000/busybox@{D}"}


def test_a_record_without_images_still_parses() -> None:
    assert parse_record(json.dumps(doc()).encode()).images == []


def test_images_parse() -> None:
    r = parse_record(json.dumps(doc(images=[IMAGE])).encode())
    assert [(i.name, i.digest, i.reference) for i in r.images] == [("busybox", D, IMAGE["reference"])]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ({**IMAGE, "digest": "sha256:short"}, "images.0.digest"),
        ({**IMAGE, "platform": "linux/amd64"}, "images.0.platform: Extra inputs are not permitted"),
        ({"name": "busybox", "digest": D}, "images.0.reference: Field required"),
    ],
)
def test_bad_images_are_refused(image: dict[str, Any], message: str) -> None:
    with pytest.raises(InstallError) as e:
        parse_record(json.dumps(doc(images=[image])).encode(), where="host40:installed.json")
    assert message in e.value.message


def test_the_module_writes_images_sorted_and_the_model_accepts_them() -> None:
    params: dict[str, Any] = {
        "root": "/",
        "bundle": {"name": "b", "version": "1.0.0", "manifest_digest": D},
        "models": [],
        "builds": [],
        "services": [],
        "images": [{**IMAGE, "name": "zeta"}, IMAGE],
    }
    record = build_record(params)
    assert [i["name"] for i in record["images"]] == ["busybox", "zeta"]
    assert parse_record(json.dumps(record).encode()).images[1].name == "zeta"
