"""What a safe component name and a safe relative path are, and how a name becomes a path under a root.

One home for the rule (STYLE.md): the spec, ``create``, ``verify``, ``extract``, ``apply``, ``unpack``, the install
record and the installer's filter plugins all call these, so a rule is written once. Names and paths inside a *signed*
descriptor are still untrusted input: a trusted key can be careless or stolen, so ``verify`` applies the same rules
as ``create``, and every writer checks the final path again with :func:`join_under` before it writes a byte.

A relative path is refused when it is empty, absolute, has an empty, ``.`` or ``..`` component, a backslash, a NUL or
any other control character (C0, DEL, C1), a component over 255 bytes or a whole path over 4096 bytes of UTF-8
(Linux's NAME_MAX and PATH_MAX). Two paths of one set collide when they are equal after Unicode NFC normalisation
and case folding: on a case-insensitive or normalising file system (macOS, Windows, some removable media) they would
be the same file, so the second would silently replace the first.

This module has no gapseal imports besides ``errors``: it sits on the lowest floor and anything may use it.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

NAME_MAX = 255
"""Bytes in one path component (Linux NAME_MAX)."""
PATH_MAX = 4096
"""Bytes in a whole path (Linux PATH_MAX)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COMPONENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class UnsafeNameError(ValueError):
    """A name or path breaks the rule; the message says which part and why (no ``where``: the caller adds it)."""


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a safe relative POSIX path, or None when it is."""
    if not isinstance(path, str):  # defensive: JSON may hand us anything
        return f"{path!r} is not a string"
    if path == "":
        return "the path is empty"
    if _CONTROL.search(path):
        return f"{path!r} contains a NUL or control character"
    if "\\" in path:
        return f"{path!r} contains a backslash"
    if path.startswith("/"):
        return f"{path!r} is absolute"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path!r} is not valid UTF-8 (a lone surrogate)"
    if len(encoded) > PATH_MAX:
        return f"the path is {len(encoded)} bytes long, over the {PATH_MAX}-byte limit"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            shown = "an empty" if part == "" else f"a {part!r}"
            return f"{path!r} has {shown} component"
        if len(part.encode("utf-8")) > NAME_MAX:
            return f"{path!r} has a component of {len(part.encode('utf-8'))} bytes, over the {NAME_MAX}-byte limit"
    return None


def check_relpath(path: str, what: str = "path") -> PurePosixPath:
    """Return ``path`` as a PurePosixPath, or raise UnsafeNameError naming ``what`` and the reason."""
    problem = path_problem(path)
    if problem is not None:
        raise UnsafeNameError(f"{what}: {problem}")
    return PurePosixPath(path)


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe component name (one path component of letters, digits, ``._-``), or None."""
    problem = path_problem(name)
    if problem is not None:
        return problem
    if "/" in name:
        return f"{name!r} contains a slash"
    if not _COMPONENT_NAME.fullmatch(name):
        return f"{name!r} must start with a letter or digit and use only letters, digits, '.', '_' and '-'"
    return None


def check_name(name: str, what: str = "name") -> str:
    """Return ``name``, or raise UnsafeNameError naming ``what`` and the reason."""
    problem = name_problem(name)
    if problem is not None:
        raise UnsafeNameError(f"{what}: {problem}")
    return name


def collision_key(path: str) -> str:
    """The form under which two paths are the same file on a normalising, case-insensitive file system."""
    return unicodedata.normalize("NFC", path).casefold()


def collisions(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Every pair ``(first, later)`` of ``paths`` that collide (equal, or equal after NFC and case folding).

    A path that is a prefix directory of another is a collision too (``a`` as a file and ``a/b`` cannot both exist).
    """
    seen: dict[str, str] = {}
    found: list[tuple[str, str]] = []
    for path in paths:
        key = collision_key(path)
        if key in seen:
            found.append((seen[key], path))
        else:
            seen[key] = path
    for key, path in seen.items():
        parts = key.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in seen:
                found.append((seen[parent], path))
    return found


def join_under(root: Path, relpath: str, what: str = "path") -> Path:
    """``root / relpath``, after checking ``relpath`` by the rule and that the result stays under ``root``.

    The containment check resolves every existing parent, so a symlink already planted inside ``root`` that points
    out of it is caught too. Call it for the final path, right before writing.
    """
    check_relpath(relpath, what)
    base = Path(os.path.realpath(root))
    target = base.joinpath(*PurePosixPath(relpath).parts)
    parent = Path(os.path.realpath(target.parent))
    if parent != base and base not in parent.parents:
        raise UnsafeNameError(f"{what}: {relpath!r} would be written outside {root}")
    if target.is_symlink():
        raise UnsafeNameError(f"{what}: {target} is a symbolic link; refusing to write through it")
    return parent / target.name
