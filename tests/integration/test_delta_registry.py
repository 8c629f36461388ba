"""Deltas against what an on-site registry holds: inventory of HOST:PORT/gapseal/NAME:VERSION on a real loopback
docker-registry, a delta built from that inventory, completed with the pulled bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import take_inventory
from gapseal.bundler.registry import load_bundle
from gapseal.cli import main
from gapseal.errors import BundleError
from tests.bundles import make_inputs, make_keys
from tests.registry.fixtures import registry_fixture  # noqa: F401 - pytest fixture
from tests.registry.server import LoopbackRegistry, free_port

pytestmark = pytest.mark.integration


def test_inventory_of_a_registry_bundle_drives_a_delta(
    tmp_path: Path, registry: LoopbackRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = make_keys(tmp_path / "keys")
    spec1 = make_inputs(tmp_path / "in1", version="1.0.0")
    v1 = create_bundle(spec1, keys.private, tmp_path / "v1", link=False)
    load_bundle(v1.path, [keys.public], registry.host, insecure=True)
    reference = f"{registry.host}/gapseal/clinic:1.0.0"

    have = tmp_path / "have.json"
    assert main(["bundle", "inventory", reference, "--insecure", "--out", str(have), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bundles"][0]["manifest_digest"] == v1.manifest_digest
    assert {b.digest for b in take_inventory([v1.path]).blobs} == {
        b["digest"] for b in json.loads(have.read_text())["blobs"]
    }

    spec2 = make_inputs(tmp_path / "in2", version="2.0.0")
    (tmp_path / "in2/docs/README.md").write_text("revised\n")
    key, pub = str(keys.private_path), str(keys.public_path)
    assert main(["bundle", "create", str(spec2), "--key", key, "--out", str(tmp_path / "d"), "--base", str(have)]) == 0
    capsys.readouterr()
    # The far side completes it with the bundle pulled from its registry.
    assert main(["bundle", "pull", reference, "--insecure", "--out", str(tmp_path / "pulled")]) == 0
    out = str(tmp_path / "full")
    args = ["bundle", "apply", str(tmp_path / "d"), "--base", str(tmp_path / "pulled"), "--out", out, "--key", pub]
    assert main(args) == 0
    assert main(["bundle", "verify", out, "--key", pub, "--state-file", str(tmp_path / "state.json")]) == 0


def test_inventory_of_a_registry_that_is_not_there_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as info:
        take_inventory([Path(f"127.0.0.1:{free_port()}/gapseal/clinic:1.0.0")], insecure=True)
    assert "127.0.0.1" in info.value.diagnostics()
    assert not list(tmp_path.iterdir())
