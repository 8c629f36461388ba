"""The README works as written: every shell block marked ``<!-- readme: run -->`` runs, in order, as a newcomer would.

The blocks run as one bash script (``set -euo pipefail``, so exports and ``cd`` carry over as they would in the
reader's shell) in a scratch directory that holds a copy of ``examples/`` (whatever spec the README names), with the
venv's ``gapseal`` on PATH, a rollback state directory of its own, and a real registry (Debian's docker-registry) on
loopback as ``$REGISTRY``. Nothing is mocked: keys, bundles, the registry, Ansible onto this machine (local
connection, under a prefix), the audit and the evidence are all real. The test fails on the first block that fails
and names it with its README line, so the README stays true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.registry.server import LoopbackRegistry

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARKER = "<!-- readme: run -->"
WHEELHOUSE = Path.home() / ".cache" / "gapseal" / "wheels"

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Block:
    """One marked shell block: its text and the README line its fence opens on."""

    line: int
    text: str


def marked_blocks(markdown: str) -> list[Block]:
    """Return the ```sh blocks directly preceded by the marker line, in document order."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            fence = i + 1
            if fence >= len(lines) or lines[fence].strip() not in ("```sh", "```bash"):
                raise AssertionError(f"README line {i + 1}: {MARKER} must be followed by a ```sh block")
            end = next((j for j in range(fence + 1, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise AssertionError(f"README line {fence + 1}: the block never closes")
            blocks.append(Block(fence + 1, "\n".join(lines[fence + 1 : end])))
            i = end
        i += 1
    return blocks


def script(blocks: list[Block]) -> str:
    """One bash script: each block announced on stderr with its README line, so a failure names its block."""
    parts = ["set -euo pipefail"]
    for n, b in enumerate(blocks, 1):
        parts.append(f"echo '>>> README block {n} (line {b.line})' >&2")
        parts.append(b.text)
    parts.append("echo '>>> README done' >&2")
    return "\n".join(parts) + "\n"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A newcomer's directory: a copy of examples/ (hard links where possible: the weights are large)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples", copy_function=_link_or_copy)
    return tmp_path


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackRegistry]:
    r = LoopbackRegistry(tmp_path_factory.mktemp("readme-registry"))
    try:
        yield r
    finally:
        r.stop()


def test_the_marked_blocks_cover_the_day() -> None:
    """The walk-through keeps every step the issue lists (a block deleted to make the test pass would show here)."""
    text = "\n".join(b.text for b in marked_blocks(README.read_text()))
    for step in (
        "gapseal keys generate",
        "gapseal bundle create",
        "gapseal bundle pack",
        "gapseal bundle verify",
        "gapseal bundle unpack",
        "gapseal bundle inspect",
        "gapseal bundle extract",
        "kind: Trust",
        "gapseal registry load",
        "gapseal bundle pull",
        "gapseal bundle inventory",
        "--base have.json",
        "gapseal bundle apply",
        "gapseal bundle diff",
        "--include-self",
        "bootstrap.py",
        "tar xf",
        "gapseal hosts detect",
        "gapseal install",
        "--check",
        "gapseal hosts status",
        "gapseal audit run",
        "gapseal evidence verify",
        "gapseal uninstall",
    ):
        assert step in text, f"the README walk-through no longer runs {step!r}"


def test_the_readme_runs_as_written(scratch: Path, registry: LoopbackRegistry) -> None:
    if not WHEELHOUSE.is_dir() or not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"{WHEELHOUSE} is empty: run `make wheels` (connected side) before the tests")
    blocks = marked_blocks(README.read_text())
    assert len(blocks) >= 8, "the README lost its walk-through"
    named = {m for b in blocks for m in re.findall(r"examples/[\w.-]+\.yaml", b.text)}
    assert named, "the walk-through names no example spec"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "GAPSEAL_STATE_DIR": str(scratch / "state"),
        "REGISTRY": registry.host,
        "HOME": str(Path.home()),  # the wheelhouse the README names lives there
    }
    env.pop("GAPSEAL_KEY_PASSPHRASE", None)  # the README sets it itself
    (scratch / "walk-through.sh").write_text(script(blocks))
    p = subprocess.run(
        ["bash", "walk-through.sh"], cwd=scratch, env=env, capture_output=True, text=True, timeout=1500, check=False
    )
    ran = [line for line in p.stderr.splitlines() if line.startswith(">>> README")]
    failed_in = ran[-1] if ran else "(before the first block)"
    tail = "\n".join((p.stdout + p.stderr).splitlines()[-40:])
    assert p.returncode == 0, f"the README fails in {failed_in}, exit {p.returncode}:\n{tail}"
    assert ran[-1] == ">>> README done"
    assert "Traceback" not in p.stdout + p.stderr
    # what the walk-through claims, checked on what it left behind
    assert (scratch / "far" / "venv" / "bin" / "gapseal").is_file(), "the far side installed gapseal from the wheels"
    assert (scratch / "evidence" / "attestation.sigstore.json").is_file()
    assert not (scratch / "hosts" / "clinic-1" / "var" / "lib" / "gapseal" / "installed.json").exists(), "uninstalled"
    assert "check mode: nothing changed" in p.stdout
    assert "NOT verified" not in p.stdout, "every pull in the walk-through is verified"
