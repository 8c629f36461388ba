"""Valid bundles are never refused: what create writes, and a faithful re-signing of it, verify (exit 0)."""

from __future__ import annotations

from pathlib import Path

from tests.adversarial.conftest import Gapseal
from tests.adversarial.forge import resign
from tests.bundles import KeyPair


def test_a_faithful_re_signing_with_the_trusted_key_verifies(bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    """The forge itself is honest: re-signing an unchanged descriptor yields a bundle verify accepts."""
    resign(bundle, keys.private)
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path)
    assert result.code == 0, result.err
