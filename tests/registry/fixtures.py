"""pytest fixtures over tests/registry/server.py: import ``registry_fixture``/``proxy_fixture`` into a test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.server import FaultProxy, LoopbackRegistry


@pytest.fixture(name="registry")
def registry_fixture(tmp_path: Path) -> Iterator[LoopbackRegistry]:
    """A fresh docker-registry on 127.0.0.1 with its storage under the test's directory; killed at teardown."""
    reg = LoopbackRegistry(tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(name="proxy")
def proxy_fixture(registry: LoopbackRegistry) -> Iterator[FaultProxy]:
    """The fault proxy in front of ``registry`` (no fault until a test sets one)."""
    p = FaultProxy(registry.host)
    try:
        yield p
    finally:
        p.stop()
