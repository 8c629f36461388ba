"""--include-self without the network: wheels in the descriptor, signed, extracted (CLI and stdlib bootstrap), refused.

The wheels here are tiny real wheels written by the test; the full gapseal wheelhouse (scripts/fetch-wheels.sh) is
used by tests/integration/test_include_self.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler import wheel_bootstrap
from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import create_delta
from gapseal.bundler.selfcontained import (
    SelfContainedError,
    Wheelhouse,
    check_target,
    default_cache_dir,
    prepare_wheelhouse,
    this_python,
)
from gapseal.bundler.verify import verify_bundle
from gapseal.cli import main
from gapseal.errors import UsageError, VerificationError
from tests.bundles import KeyPair, make_inputs, make_keys
from tests.unit.bundler.wheels import write_wheel


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keys(tmp_path_factory.mktemp("keys"))


def _wheelhouse(root: Path) -> Wheelhouse:
    root.mkdir()
    write_wheel(root, "tiny_dep", "1.2.3")
    write_wheel(root, "gapseal_stub", "0.0.1", requires=["tiny-dep"])
    return Wheelhouse(root, "3.11", None)


def test_wheels_are_signed_layers_of_the_bundle(tmp_path: Path, keys: KeyPair) -> None:
    wheels = _wheelhouse(tmp_path / "wh")
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False, wheels=wheels)
    ws = created.descriptor.wheels
    assert ws is not None
    assert ws.python_version == "3.11"
    assert [(w.name, w.version, w.path) for w in ws.files] == [
        ("gapseal-stub", "0.0.1", "gapseal_stub-0.0.1-py3-none-any.whl"),
        ("tiny-dep", "1.2.3", "tiny_dep-1.2.3-py3-none-any.whl"),
    ]
    assert all(w.media_type == "application/vnd.gapseal.python.wheel.v1+zip" for w in ws.files)
    verified = verify_bundle(created.path, [keys.public])
    subjects = {s.name for s in verified.statement.subjects}
    assert {"wheels/tiny_dep-1.2.3-py3-none-any.whl", "wheels/gapseal_stub-0.0.1-py3-none-any.whl"} <= subjects


def test_tampered_wheel_is_named_by_verify_and_by_the_bootstrap(tmp_path: Path, keys: KeyPair) -> None:
    wheels = _wheelhouse(tmp_path / "wh")
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False, wheels=wheels)
    assert created.descriptor.wheels is not None
    entry = created.descriptor.wheels.files[1]
    blob = created.path / oci.blob_path(entry.digest)
    data = bytearray(blob.read_bytes())
    data[40] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"wheels/tiny_dep-1.2.3-py3-none-any.whl is corrupt"):
        verify_bundle(created.path, [keys.public])
    with pytest.raises(wheel_bootstrap.BootstrapError, match="tiny_dep-1.2.3-py3-none-any.whl does not match"):
        wheel_bootstrap.extract_wheels(created.path, tmp_path / "out")
    assert not (tmp_path / "out/tiny_dep-1.2.3-py3-none-any.whl").exists()


def test_extract_wheels_cli_and_stdlib_bootstrap_give_the_same_installable_files(
    tmp_path: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = _wheelhouse(tmp_path / "wh")
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False, wheels=wheels)
    out = tmp_path / "x"
    assert (
        main(["bundle", "extract", str(created.path), "--wheels", "--out", str(out), "--key", str(keys.public_path)])
        == 0
    )
    assert "extracted wheels of gapseal (2 files)" in capsys.readouterr().out
    # The bootstrap runs as a plain script with the interpreter in isolated mode: it must need nothing but the stdlib.
    script = Path(wheel_bootstrap.__file__)
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(created.path), str(tmp_path / "y")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 wheels" in result.stdout
    for name in os.listdir(wheels.directory):
        assert (out / name).read_bytes() == (wheels.directory / name).read_bytes()
        assert (tmp_path / "y" / name).read_bytes() == (wheels.directory / name).read_bytes()
    # pip installs them with no index at all (a real install into a target directory).
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(out)]
        + ["--target", str(target), "gapseal-stub"],
        capture_output=True,
        text=True,
        check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull},
    )
    assert pip.returncode == 0, pip.stderr
    assert (target / "tiny_dep/__init__.py").is_file()


def test_extract_wheels_of_a_bundle_without_any(
    tmp_path: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False)
    args = ["bundle", "extract", str(created.path), "--wheels", "--out", str(tmp_path / "x")]
    assert main([*args, "--key", str(keys.public_path)]) == 2
    assert "this bundle carries no wheels" in capsys.readouterr().err
    with pytest.raises(wheel_bootstrap.BootstrapError, match="carries no wheels"):
        wheel_bootstrap.extract_wheels(created.path, tmp_path / "y")
    assert main(["bundle", "extract", str(created.path), "--wheels", "--files", "docs", "--out", "z"]) == 2


def test_bootstrap_refuses_a_hostile_wheel_name(tmp_path: Path, keys: KeyPair) -> None:
    """A layer title with a path in it (only possible in a forged manifest) is refused before any write."""
    import json

    wheels = _wheelhouse(tmp_path / "wh")
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False, wheels=wheels)
    index = json.loads((created.path / "index.json").read_bytes())
    manifest_path = created.path / oci.blob_path(index["manifests"][0]["digest"])
    manifest = json.loads(manifest_path.read_bytes())
    for layer in manifest["layers"]:
        if layer["annotations"]["org.opencontainers.image.title"].startswith("wheels/tiny"):
            layer["annotations"]["org.opencontainers.image.title"] = "wheels/../../evil.whl"
    data = json.dumps(manifest).encode()
    digest = oci.sha256_digest(data)
    (created.path / oci.blob_path(digest)).write_bytes(data)
    index["manifests"][0]["digest"] = digest
    index["manifests"][0]["size"] = len(data)
    (created.path / "index.json").write_text(json.dumps(index))
    with pytest.raises(wheel_bootstrap.BootstrapError, match=r"refusing wheel name '../../evil.whl'"):
        wheel_bootstrap.extract_wheels(created.path, tmp_path / "out")
    assert not (tmp_path / "evil.whl").exists()


def test_unchanged_wheels_are_left_out_of_a_delta(tmp_path: Path, keys: KeyPair) -> None:
    wheels = _wheelhouse(tmp_path / "wh")
    spec = make_inputs(tmp_path / "in")
    base = create_bundle(spec, keys.private, tmp_path / "v1", link=False, wheels=wheels)
    delta = create_delta(spec, keys.private, tmp_path / "d", base.path, link=False, wheels=wheels)
    omitted = {b.digest for b in delta.marker.omitted}
    assert base.descriptor.wheels is not None
    assert {w.digest for w in base.descriptor.wheels.files} <= omitted


@pytest.mark.parametrize(
    ("version", "platform", "message"),
    [
        ("3", None, "--python-version must look like 3.11"),
        ("python3.11", None, "--python-version must look like 3.11"),
        ("3.11", "Linux x86_64", "--platform must be a wheel platform tag"),
        ("3.11", "../x", "--platform must be a wheel platform tag"),
    ],
)
def test_bad_targets_are_usage_errors(version: str, platform: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_target(version, platform)


def test_default_target_and_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert check_target(None, None) == (this_python(), None)
    monkeypatch.setenv("GAPSEAL_WHEEL_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GAPSEAL_WHEEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x/gapseal/wheels"


def test_a_wheelhouse_missing_dependencies_fails_with_pips_reason(tmp_path: Path) -> None:
    """Offline (--no-index): the build backend is not in this wheelhouse, so building gapseal fails, saying why."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SelfContainedError) as info:
        prepare_wheelhouse(tmp_path / "w", wheels_from=empty)
    assert info.value.message.startswith("building the gapseal wheel from ")
    assert "pip exit 1" in info.value.message
    assert "hatchling" in info.value.message
    assert "--wheels-from" in (info.value.hint or "")


def test_cli_options_that_need_include_self(tmp_path: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    spec = make_inputs(tmp_path / "in")
    args = ["bundle", "create", str(spec), "--key", str(keys.private_path), "--out", str(tmp_path / "b")]
    assert main([*args, "--python-version", "3.12"]) == 2
    assert "go with --include-self" in capsys.readouterr().err
    assert main([*args, "--include-self", "--wheels-from", str(tmp_path / "nowhere")]) == 2
    assert "--wheels-from is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_inspect_shows_wheels_and_sbom(tmp_path: Path, keys: KeyPair, capsys: pytest.CaptureFixture[str]) -> None:
    wheels = _wheelhouse(tmp_path / "wh")
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False, wheels=wheels)
    assert main(["bundle", "inspect", str(created.path)]) == 0
    out = capsys.readouterr().out
    assert "wheels    2 (gapseal and its dependencies, Python 3.11, the building machine)" in out
    assert "sbom      CycloneDX bom.cdx.json" in out
