"""Fixtures of the hostile-input suite: a trusted key, a genuine bundle made with it, and the CLI run in-process.

Each test breaks one thing (by hand, or by re-signing a malicious descriptor with the trusted key through
``tests.adversarial.forge``) and asserts the exit code and that the message names the problem, with no traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gapseal.cli import main
from tests.bundles import KeyPair, make_bundle, make_keys


@dataclass(frozen=True)
class Result:
    """One CLI run: exit code and captured output."""

    code: int
    out: str
    err: str


Gapseal = Callable[..., Result]


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    """The trusted key pair (the security team's; in these tests also the attacker's, as if stolen)."""
    return make_keys(tmp_path / "keys")


@pytest.fixture
def bundle(tmp_path: Path, keys: KeyPair) -> Path:
    """A genuine small bundle directory (model, docs, two build variants) signed with ``keys``."""
    return make_bundle(tmp_path / "made", keys).path


@pytest.fixture
def gapseal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Gapseal:
    """Run ``gapseal ARGS`` in-process (paths as str), with a private rollback state directory."""
    monkeypatch.setenv("GAPSEAL_STATE_DIR", str(tmp_path / "state"))

    def run(*args: object) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def refused(result: Result, *fragments: str, code: int = 1) -> None:
    """Assert ``result`` failed with ``code``, no traceback, and every fragment in its message (case-insensitive)."""
    text = result.err + result.out
    assert result.code == code, text
    assert "Traceback" not in text, text
    for fragment in fragments:
        assert fragment.lower() in " ".join(text.split()).lower(), (fragment, text)
