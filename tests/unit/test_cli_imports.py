"""What the CLI imports on its way to a command: start-up is most of a small pull or load (issue 12).

Each case runs the real ``gapseal`` entry point in a fresh interpreter and reads ``sys.modules`` afterwards, so a
module-level import that drags a heavy dependency back onto a path that does not use it fails here, without any
timing. Registry commands are pointed at a port on 127.0.0.1 that nothing listens on: they import everything they
need, then fail to connect (exit 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gapseal.signing.keys import generate_key_pair
from tests.registry.server import free_port

_RUN = """
import json, sys
from gapseal.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

HELP_NEVER = (
    "cryptography",
    "pydantic",
    "yaml",
    "sigstore",
    "sigstore_models",
    "rekor_types",
    "gapseal.bundler",
    "gapseal.signing.keys",
    "gapseal.installer",
    "gapseal.audit",
    "rich.progress",
)
"""Nothing of the libraries behind the commands: ``gapseal --help`` lists them, it does not run them."""

REGISTRY_NEVER = (
    "gapseal.bundler.model_formats",
    "gapseal.bundler.elf",
    "gapseal.bundler.inputs",
    "gapseal.bundler.selfcontained",
    "gapseal.bundler.model_signature",
    "sigstore.dsse",  # signing only: verification checks the statement's shape itself
    "rekor_types",
    "gapseal.installer",
    "gapseal.audit",
    "rich.progress",
    "rich.table",
)
"""What ``bundle create`` (and install, audit, a progress bar) need, and a quiet pull or load does not."""


def _modules_after(args: list[str], cwd: Path) -> tuple[int, set[str]]:
    proc = subprocess.run(  # noqa: S603 - this interpreter, an argument list
        [sys.executable, "-c", _RUN, *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=120
    )
    assert proc.stdout, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    return result["code"], set(result["modules"])


def _loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_help_imports_no_library(tmp_path: Path) -> None:
    code, modules = _modules_after(["--help"], tmp_path)
    assert code == 0
    assert _loaded(modules, HELP_NEVER) == []


@pytest.mark.parametrize("group", ["bundle", "registry", "keys"])
def test_group_help_imports_no_library(group: str, tmp_path: Path) -> None:
    code, modules = _modules_after([group, "--help"], tmp_path)
    assert code == 0
    assert _loaded(modules, ("cryptography", "sigstore", "rekor_types", "gapseal.bundler", "gapseal.signing")) == []


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    generate_key_pair(tmp_path / "site", None)
    return tmp_path / "site.pub"


def test_quiet_pull_imports_only_what_pulling_and_verifying_use(public_key: Path, tmp_path: Path) -> None:
    ref = f"127.0.0.1:{free_port()}/gapseal/tiny:1.0.0"
    args = ["bundle", "pull", ref, "--insecure", "--key", str(public_key), "--out", "pulled", "-q"]
    code, modules = _modules_after([*args, "--state-file", str(tmp_path / "state.json")], tmp_path)
    assert code == 1  # connection refused, after the imports
    assert "gapseal.bundler.verify" in modules  # the case reached the command: verification is imported
    assert _loaded(modules, REGISTRY_NEVER) == []


def test_quiet_load_imports_only_what_verifying_and_pushing_use(public_key: Path, tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    args = ["registry", "load", "bundle", "--registry", f"127.0.0.1:{free_port()}", "--insecure"]
    code, modules = _modules_after([*args, "--key", str(public_key), "-q"], tmp_path)
    assert code == 1  # the empty directory is no bundle, after the imports
    assert "gapseal.bundler.verify" in modules
    assert _loaded(modules, REGISTRY_NEVER) == []
