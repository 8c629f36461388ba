"""The self-contained bundle, proven: a host with no network at all installs gapseal from the bundle and verifies it.

Everything that could reach a network runs inside a network namespace this test creates with only ``lo`` up and no
route to anything (a route lookup to a documentation address fails with ENETUNREACH): the connected side's
``bundle create --include-self --wheels-from`` (pip resolves from the local wheelhouse that ``make wheels`` /
scripts/fetch-wheels.sh filled before the tests), and the far side's plain ``tar xf``, the stdlib-only wheel
bootstrap, ``python3 -m venv``, ``pip install --no-index --find-links``, ``gapseal --version`` and a real
``gapseal bundle verify`` with the installed gapseal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.bundler import wheel_bootstrap
from gapseal.bundler.selfcontained import default_cache_dir
from tests.bundles import make_inputs, make_keys

pytestmark = pytest.mark.integration

GAPSEAL = str(Path(sys.executable).with_name("gapseal"))
FAR_PYTHON = "/usr/bin/python3"
"""The far host's system Python (Debian's), not the test venv's."""


@pytest.fixture
def isolated_ns() -> Iterator[str]:
    """A network namespace with only loopback up: no interface, no address, no route beyond 127.0.0.0/8."""
    name = f"gs-self-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _clean_env(tmp: Path) -> dict[str, str]:
    """No pip configuration or PIP_* variables leak in (this machine's pip config names local wheel directories)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return env | {"PIP_CONFIG_FILE": os.devnull, "HOME": str(tmp / "home"), "GAPSEAL_STATE_DIR": str(tmp / "state")}


def _in_ns(ns: str, args: list[str], *, env: dict[str, str], cwd: Path, timeout: int = 600) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args[:3]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_offline_host_installs_gapseal_from_the_bundle_and_verifies_it(tmp_path: Path, isolated_ns: str) -> None:
    wheelhouse = default_cache_dir()
    if not any(wheelhouse.glob("hatchling-*.whl")):
        pytest.fail(f"no wheelhouse at {wheelhouse}: run `make wheels` (scripts/fetch-wheels.sh) first")
    (tmp_path / "home").mkdir()
    env = _clean_env(tmp_path)

    # The namespace really has no way out: a route lookup to a public (documentation) address fails, no packet sent.
    probe = (
        "import errno, socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n    s.connect(('203.0.113.7', 443))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n"
    )
    assert _in_ns(isolated_ns, [FAR_PYTHON, "-c", probe], env=env, cwd=tmp_path).strip() == "ENETUNREACH"

    # Connected side, but without network: the wheels come from the local wheelhouse only.
    keys = make_keys(tmp_path / "keys", "team")
    spec = make_inputs(tmp_path / "in")
    _in_ns(
        isolated_ns,
        [GAPSEAL, "bundle", "create", str(spec), "--key", str(keys.private_path), "--out", "bundle", "--no-link"]
        + ["--include-self", "--wheels-from", str(wheelhouse), "--quiet"],
        env=env,
        cwd=tmp_path,
    )
    _in_ns(isolated_ns, [GAPSEAL, "bundle", "pack", "bundle", "--out", "bundle.tar", "--quiet"], env=env, cwd=tmp_path)

    # Far side: only the tar, the team's public key, the bootstrap script and a system Python; no gapseal.
    far = tmp_path / "far"
    (far / "bundle").mkdir(parents=True)
    shutil.copy(keys.public_path, far / "team.pub")
    shutil.copy(wheel_bootstrap.__file__, far / "wheel_bootstrap.py")
    _in_ns(isolated_ns, ["tar", "xf", str(tmp_path / "bundle.tar"), "-C", "bundle"], env=env, cwd=far)
    out = _in_ns(isolated_ns, [FAR_PYTHON, "-I", "wheel_bootstrap.py", "bundle", "wheels"], env=env, cwd=far)
    assert "wrote" in out
    wheels = sorted(p.name for p in (far / "wheels").iterdir())
    assert any(w.startswith("gapseal-0.1.0-") for w in wheels)
    assert any(w.startswith("cryptography-") for w in wheels)
    _in_ns(isolated_ns, [FAR_PYTHON, "-m", "venv", "venv"], env=env, cwd=far)
    _in_ns(
        isolated_ns,
        ["venv/bin/python", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", "wheels", "gapseal"],
        env=env,
        cwd=far,
        timeout=900,
    )
    version = _in_ns(isolated_ns, ["venv/bin/gapseal", "--version"], env=env, cwd=far)
    assert "0.1.0" in version
    verified = _in_ns(
        isolated_ns, ["venv/bin/gapseal", "bundle", "verify", "bundle", "--key", "team.pub", "--json"], env=env, cwd=far
    )
    assert '"ok": true' in verified
    assert '"name": "clinic"' in verified
    # The installed gapseal is the far side's own, not the test venv's.
    where = _in_ns(isolated_ns, ["venv/bin/python", "-c", "import gapseal; print(gapseal.__file__)"], env=env, cwd=far)
    assert where.startswith(str(far / "venv"))


def test_a_target_the_wheelhouse_cannot_serve_fails_naming_the_target(tmp_path: Path) -> None:
    """Offline resolution for another platform: the local wheelhouse holds x86_64 wheels only, so pip says so."""
    from gapseal.bundler.selfcontained import SelfContainedError, prepare_wheelhouse

    wheelhouse = default_cache_dir()
    if not any(wheelhouse.glob("hatchling-*.whl")):
        pytest.fail(f"no wheelhouse at {wheelhouse}: run `make wheels` (scripts/fetch-wheels.sh) first")
    with pytest.raises(SelfContainedError) as info:
        prepare_wheelhouse(
            tmp_path / "w", python_version="3.11", platform="manylinux_2_28_aarch64", wheels_from=wheelhouse
        )
    message = info.value.message
    assert message.startswith("resolving gapseal's dependencies as wheels for Python 3.11 (manylinux_2_28_aarch64)")
    assert "No matching distribution found" in message
