"""gapseal.names: the one rule for safe names and relative paths, and containment under a root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gapseal.names import (
    UnsafeNameError,
    check_name,
    check_relpath,
    collisions,
    join_under,
    name_problem,
    path_problem,
)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../../etc/x", "'..' component"),
        ("a/../b", "'..' component"),
        ("a/./b", "'.' component"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("a\\b", "backslash"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\x85b", "control character"),
        ("x" * 256, "over the 255-byte limit"),
        ("/".join(["d" * 200] * 21), "over the 4096-byte limit"),
        ("a\udc80", "surrogate"),
    ],
)
def test_unsafe_paths_are_refused_with_the_reason(path: str, reason: str) -> None:
    problem = path_problem(path)
    assert problem is not None
    assert reason in problem
    with pytest.raises(UnsafeNameError, match="models\\[0\\].path"):
        check_relpath(path, "models[0].path")


@pytest.mark.parametrize("path", ["a", "models/minilm/model.safetensors", "é/ü.bin", "x" * 255, ".hidden/f"])
def test_safe_paths_pass(path: str) -> None:
    assert path_problem(path) is None
    assert str(check_relpath(path)) == path


@pytest.mark.parametrize("name", ["a/b", "-x", ".x", "a b", "..", "ä"])
def test_unsafe_component_names(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(UnsafeNameError):
        check_name(name)


def test_collisions_nfc_casefold_and_prefix() -> None:
    pairs = collisions(["Model.bin", "model.BIN", "caf\u00e9", "cafe\u0301", "d", "d/e", "ok"])
    assert ("Model.bin", "model.BIN") in pairs
    assert ("caf\u00e9", "cafe\u0301") in pairs
    assert ("d", "d/e") in pairs
    assert len(pairs) == 3


def test_join_under_stays_under_root(tmp_path: Path) -> None:
    assert join_under(tmp_path, "a/b") == Path(os.path.realpath(tmp_path)) / "a" / "b"
    with pytest.raises(UnsafeNameError, match="'..' component"):
        join_under(tmp_path, "../x")


def test_join_under_catches_a_planted_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    with pytest.raises(UnsafeNameError, match="outside"):
        join_under(root, "evil/x")
    (root / "link").symlink_to(tmp_path / "target")
    with pytest.raises(UnsafeNameError, match="symbolic link"):
        join_under(root, "link")
