"""The bundle commands as an operator runs them: the installed ``gapseal`` console script, real files, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundles import make_inputs, make_minilm_inputs

GAPSEAL = str(Path(sys.executable).with_name("gapseal"))


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "GAPSEAL_STATE_DIR": str(cwd / "state"), "SOURCE_DATE_EPOCH": "1767225600", **(env or {})}
    return subprocess.run(
        [GAPSEAL, *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    result = run("keys", "generate", "team", cwd=tmp_path, env={"GAPSEAL_KEY_PASSPHRASE": "correct horse"})
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_create_pack_split_verify_inspect_with_the_real_model(workdir: Path) -> None:
    spec = make_minilm_inputs(workdir / "in")
    env = {"GAPSEAL_KEY_PASSPHRASE": "correct horse"}
    created = run("bundle", "create", spec, "--key", "team.key", "--out", "b", "--json", cwd=workdir, env=env)
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert doc["name"] == "minilm-demo"
    assert doc["manifest_digest"].startswith("sha256:")

    assert run("bundle", "pack", "b", "--out", "b.tar", cwd=workdir).returncode == 0
    split = run("bundle", "pack", "b", "--out", "s.tar", "--part-size", "40MiB", "--json", cwd=workdir)
    assert split.returncode == 0, split.stderr
    parts = json.loads(split.stdout)["parts"]
    assert len(parts) >= 3

    for form in ("b", "b.tar", "s.part0001.tar"):
        verified = run("bundle", "verify", form, "--key", "team.pub", "--json", cwd=workdir)
        assert verified.returncode == 0, (form, verified.stderr)
        assert json.loads(verified.stdout)["manifest_digest"] == doc["manifest_digest"]

    inspected = run("bundle", "inspect", "b.tar", "--json", cwd=workdir)
    info = json.loads(inspected.stdout)
    assert info["models"][0]["format"] == "safetensors"
    assert info["models"][0]["format_details"]["safetensors"]["parameter_count"] == 22713728
    assert info["builds"][0]["variants"][0]["requires"] == {"cpu_flags": ["sse2"]}
    assert info["signature_verified"] is False

    assert run("bundle", "unpack", "b.tar", "--out", "u", cwd=workdir).returncode == 0
    assert run("bundle", "verify", "u", "--key", "team.pub", cwd=workdir).returncode == 0


def test_model_signing_verifies_the_extracted_model(workdir: Path) -> None:
    """The OpenSSF model signature in the bundle is accepted by the real model_signing CLI on the extracted model."""
    spec = make_minilm_inputs(workdir / "in")
    env = {"GAPSEAL_KEY_PASSPHRASE": "correct horse"}
    assert run("bundle", "create", spec, "--key", "team.key", "--out", "b", cwd=workdir, env=env).returncode == 0
    out = run("bundle", "extract", "b", "--model", "minilm", "--out", "model", "--key", "team.pub", cwd=workdir)
    assert out.returncode == 0, out.stderr
    tool = str(Path(sys.executable).with_name("model_signing"))
    args = [tool, "verify", "key", "--signature", "model/model.sig", "--public_key", "team.pub", "model"]
    ok = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Tampering with the extracted weights must make model_signing refuse.
    weights = workdir / "model/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.unlink()  # replaced here; editing in place works too, extracted files are copies (test_write_paths)
    weights.write_bytes(bytes(data))
    bad = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode != 0


def test_verification_failure_exits_1_and_names_the_file(workdir: Path) -> None:
    spec = make_inputs(workdir / "in")
    env = {"GAPSEAL_KEY_PASSPHRASE": "correct horse"}
    assert (
        run("bundle", "create", spec, "--key", "team.key", "--out", "b", "--no-link", cwd=workdir, env=env).returncode
        == 0
    )
    (workdir / "b/extra.bin").write_bytes(b"x")
    result = run("bundle", "verify", "b", "--key", "team.pub", "--json", cwd=workdir)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert "unexpected file in the layout: extra.bin" in doc["message"]
    assert "extra.bin" in result.stderr


def test_usage_errors_exit_2(workdir: Path) -> None:
    assert run("bundle", "verify", "nothing", cwd=workdir).returncode == 2  # no --key / --trust
    assert run("bundle", "create", cwd=workdir).returncode == 2
    assert run("bundle", "pack", "x", "--out", "y.tar", "--part-size", "lots", cwd=workdir).returncode == 2


def test_downgrade_refused_then_allowed(workdir: Path) -> None:
    env = {"GAPSEAL_KEY_PASSPHRASE": "correct horse"}
    for version in ("2.0.0", "1.0.0"):
        spec = make_inputs(workdir / f"in-{version}", version=version)
        assert (
            run("bundle", "create", spec, "--key", "team.key", "--out", f"b{version}", cwd=workdir, env=env).returncode
            == 0
        )
    assert run("bundle", "verify", "b2.0.0", "--key", "team.pub", cwd=workdir).returncode == 0
    # verify only looks: the mark has not moved, so 1.0.0 still verifies; using 2.0.0 (extract) moves it.
    assert run("bundle", "verify", "b1.0.0", "--key", "team.pub", cwd=workdir).returncode == 0
    used = run("bundle", "extract", "b2.0.0", "--files", "docs", "--out", "x", "--key", "team.pub", cwd=workdir)
    assert used.returncode == 0, used.stderr
    refused = run("bundle", "verify", "b1.0.0", "--key", "team.pub", cwd=workdir)
    assert refused.returncode == 1
    assert "rollback refused" in refused.stderr
    assert run("bundle", "verify", "b1.0.0", "--key", "team.pub", "--allow-downgrade", cwd=workdir).returncode == 0


def test_create_refuses_a_symlinked_input_unless_followed(workdir: Path) -> None:
    spec = make_inputs(workdir / "in")
    (workdir / "in/shared").mkdir()
    shutil.move(workdir / "in/docs/README.md", workdir / "in/shared/README.md")
    (workdir / "in/docs/README.md").symlink_to("../shared/README.md")  # inside the spec's directory
    env = {"GAPSEAL_KEY_PASSPHRASE": "correct horse"}
    refused = run("bundle", "create", spec, "--key", "team.key", "--out", "b", cwd=workdir, env=env)
    assert refused.returncode == 1
    assert "README.md" in refused.stderr
    assert not (workdir / "b").exists()
    followed = run(
        "bundle", "create", spec, "--key", "team.key", "--out", "b", "--follow-symlinks", cwd=workdir, env=env
    )
    assert followed.returncode == 0, followed.stderr
