"""The delta commands through the CLI: inventory, create --base, verify with and without --base, apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapseal.bundler.create import create_bundle
from gapseal.cli import main
from tests.bundles import KeyPair, make_inputs, make_keys


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return make_keys(tmp_path / "keys")


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return doc


def test_second_delivery_through_the_cli(
    tmp_path: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAPSEAL_STATE_DIR", str(tmp_path / "state"))
    spec1 = make_inputs(tmp_path / "in1", version="1.0.0")
    create_bundle(spec1, keys.private, tmp_path / "v1", link=False)
    spec2 = make_inputs(tmp_path / "in2", version="2.0.0")
    (tmp_path / "in2/docs/README.md").write_text("revised\n")
    pub, key = str(keys.public_path), str(keys.private_path)

    # Far side: what it has.
    assert main(["bundle", "inventory", str(tmp_path / "v1"), "--out", str(tmp_path / "have.json"), "--json"]) == 0
    inv = _json(capsys)
    assert inv["bundles"] == [json.loads((tmp_path / "have.json").read_text())["bundles"][0]]

    # Connected side: the delta against it.
    args = ["bundle", "create", str(spec2), "--key", key, "--out", str(tmp_path / "d"), "--no-link"]
    assert main([*args, "--base", str(tmp_path / "have.json"), "--json"]) == 0
    created = _json(capsys)
    delta = created["delta"]
    assert isinstance(delta, dict)
    assert delta["base"] == "clinic 1.0.0"
    assert delta["omitted_blobs"] == 5
    assert isinstance(delta["stored_bytes"], int)
    assert delta["stored_bytes"] < 20_000

    # Far side: verify alone says what to do; with --base it verifies; apply makes the full bundle.
    assert main(["bundle", "verify", str(tmp_path / "d"), "--key", pub]) == 1
    err = capsys.readouterr().err
    assert "this is a delta of clinic 2.0.0" in err
    assert "pass --base" in err
    assert main(["bundle", "verify", str(tmp_path / "d"), "--key", pub, "--base", str(tmp_path / "v1"), "--json"]) == 0
    assert _json(capsys)["manifest_digest"] == created["manifest_digest"]
    out = str(tmp_path / "full")
    assert (
        main(["bundle", "apply", str(tmp_path / "d"), "--base", str(tmp_path / "v1"), "--out", out, "--key", pub]) == 0
    )
    assert "verified standalone" in capsys.readouterr().out
    assert main(["bundle", "verify", out, "--key", pub, "--json"]) == 0
    assert _json(capsys)["manifest_digest"] == created["manifest_digest"]


def test_apply_against_the_wrong_base_exits_1_naming_blobs(
    tmp_path: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    spec1 = make_inputs(tmp_path / "in1", version="1.0.0")
    create_bundle(spec1, keys.private, tmp_path / "v1", link=False)
    spec2 = make_inputs(tmp_path / "in2", version="2.0.0")
    (tmp_path / "in2/docs/README.md").write_text("revised\n")
    key, pub = str(keys.private_path), str(keys.public_path)
    assert (
        main(
            ["bundle", "create", str(spec2), "--key", key, "--out", str(tmp_path / "d"), "--base", str(tmp_path / "v1")]
        )
        == 0
    )
    (tmp_path / "empty").mkdir()  # a base holding nothing at all
    capsys.readouterr()
    out = str(tmp_path / "full")
    rc = main(["bundle", "apply", str(tmp_path / "d"), "--base", str(tmp_path / "empty"), "--out", out, "--key", pub])
    assert rc == 1
    err = capsys.readouterr().err
    assert "the base lacks 5 of the 5 blobs" in err
    assert "models/tiny/model.safetensors: sha256:" in err
    assert not (tmp_path / "full").exists()
