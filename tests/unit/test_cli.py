"""The CLI root: help, version, and exit codes for usage errors."""

from __future__ import annotations

import pytest

from gapseal import __version__
from gapseal.cli import main


def test_version_prints_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_is_a_usage_error() -> None:
    assert main(["no-such-command"]) == 2


@pytest.mark.parametrize("group", ["keys", "bundle", "registry", "hosts", "audit", "evidence", "policy"])
def test_every_group_has_help(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([group, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out
