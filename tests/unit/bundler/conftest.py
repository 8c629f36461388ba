"""Every bundler unit test keeps its rollback state in its own directory, never in the machine's ~/.local/state."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_rollback_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Commands that use a bundle (extract, apply, install) move the high-water mark of the default state file.
    monkeypatch.setenv("GAPSEAL_STATE_DIR", str(tmp_path / "rollback-state"))
