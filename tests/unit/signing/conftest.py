"""Keys for the signing tests: fresh P-256 keys, in memory (tests generate their keys; none is committed)."""

from __future__ import annotations

import pytest

from gapseal.signing.keys import SigningKey


@pytest.fixture(scope="module")
def key_a() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def key_b() -> SigningKey:
    return SigningKey.generate()
