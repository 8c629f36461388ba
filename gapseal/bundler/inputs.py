"""Turn a loaded spec into the exact list of files each component bundles, refusing anything that is not plain data.

A component path may be:

- a directory: walked recursively, entries sorted; every regular file is included, whatever its name. Nothing is
  skipped silently: a ``.git`` directory, editor backups or ``__pycache__`` inside a model directory ARE bundled. The
  spec author chooses the path, so point it at a clean directory.
- a single regular file: one entry named by its basename.
- a Hugging Face cache snapshot (``.../models--org--name/snapshots/<rev>/``), whose entries are symlinks into
  ``../../blobs/``: those symlinks are read through, but only when they resolve to a regular file inside that repo's
  ``blobs/`` directory.

Every other symlink, and every device, fifo or socket, is an ``InputError`` naming the path. With
``follow_symlinks=True`` symlinks are read through instead: their targets must be regular files or directories inside
the spec's directory; loops and escapes are still errors.

``InputFile.source`` is the file to read (the blob behind a Hugging Face symlink); ``size`` is its size when it was
listed. Whoever reads it must check the size again and open it without following a symlink swapped in since.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gapseal.bundler.spec import ComponentRef, LoadedSpec
from gapseal.errors import InputError
from gapseal.names import collisions, path_problem

ComponentKind = Literal["model", "files", "build", "image"]
"""What a component is; ``collect_inputs`` lists models, files and builds (images are read by their own source)."""

_HF_REPO_PREFIXES = ("models--", "datasets--", "spaces--")
MAX_FILES = 1_000_000
"""Most files one component may hold: a guard against link fan-out under ``follow_symlinks``."""


@dataclass(frozen=True, slots=True)
class InputFile:
    """One regular file of a component."""

    rel_path: str
    """POSIX path relative to the component root (the basename for a single-file component)."""
    source: Path
    """The real regular file to read (for a Hugging Face snapshot: the blob its symlink points to)."""
    size: int
    """Size in bytes when listed."""


@dataclass(frozen=True)
class ComponentInputs:
    """The files of one component (a model, a file set, or one variant of a build)."""

    kind: ComponentKind
    name: str
    """The component's name from the spec."""
    variant: int | None
    """Index of the variant within its build; ``None`` for models and file sets."""
    root: Path
    """The component path, absolute (``..`` collapsed, symlinks not resolved)."""
    files: tuple[InputFile, ...]
    """Every file, sorted by ``rel_path``."""
    single_file: bool = False
    """True when the component path is one file rather than a directory."""

    @property
    def total_size(self) -> int:
        """Sum of the file sizes."""
        return sum(f.size for f in self.files)


def _kind_of(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def hf_blobs_dir(path: Path) -> Path | None:
    """Return the ``blobs/`` directory of the Hugging Face cache repo whose snapshot holds ``path``, if any.

    ``path`` lies in a snapshot when one of its ancestors (or itself) is ``<repo>/snapshots/<rev>`` with a repo
    directory named ``models--…``, ``datasets--…`` or ``spaces--…``.
    """
    candidates = [path, *path.parents]
    for snap in candidates:
        parent = snap.parent
        if parent.name == "snapshots" and parent.parent.name.startswith(_HF_REPO_PREFIXES) and snap.name:
            return parent.parent / "blobs"
    return None


_BAD_NAME_CHAR = re.compile(r"[\x00-\x1f\x7f\\]")


def _check_name(name: str, where: Path) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: file name is not valid UTF-8", where=str(where), hint="rename the file") from None
    if _BAD_NAME_CHAR.search(name):
        raise InputError(
            f"{where}: file name holds a control character or a backslash", where=str(where), hint="rename the file"
        )


class _Walker:
    def __init__(self, spec_dir: Path, root: Path, *, follow_symlinks: bool) -> None:
        self.spec_dir = spec_dir
        self.root = root
        self.follow = follow_symlinks
        self.hf_blobs = hf_blobs_dir(root)
        self.hf_blobs_real = self.hf_blobs.resolve() if self.hf_blobs is not None and self.hf_blobs.is_dir() else None
        self.files: list[InputFile] = []

    def _inside(self, real: Path, base: Path) -> bool:
        return real == base or base in real.parents

    def _through_symlink(self, link: Path, shown: Path | None = None) -> tuple[Path, os.stat_result]:
        """Resolve ``link`` when a rule allows it; return the real path and its stat, or raise ``InputError``.

        ``shown`` is the path to name in messages (the lexical one when ``link`` lies under a followed link).
        """
        shown = shown or link
        in_snapshot = (
            self.hf_blobs_real is not None and self.hf_blobs is not None and hf_blobs_dir(link) == self.hf_blobs
        )
        if not in_snapshot and not self.follow:
            raise InputError(
                f"{shown}: is a symlink (to {os.readlink(link)}); inputs must be regular files and directories",
                where=str(shown),
                hint="replace the link with the file, or pass --follow-symlinks to read through links",
            )
        try:
            real = link.resolve(strict=True)
            st = real.stat()
        except (OSError, RuntimeError) as e:
            raise InputError(f"{shown}: symlink cannot be resolved (dangling or a loop): {e}", where=str(shown)) from e
        if in_snapshot and self.hf_blobs_real is not None:
            if not self._inside(self.hf_blobs_real, self.spec_dir):
                raise InputError(
                    f"{shown}: the Hugging Face repo's blobs/ directory {self.hf_blobs} resolves to "
                    f"{self.hf_blobs_real}, outside the spec's directory {self.spec_dir}",
                    where=str(shown),
                    hint="copy the cache repo under the spec's directory instead of linking its blobs/",
                )
            if not self._inside(real, self.hf_blobs_real) or real == self.hf_blobs_real:
                raise InputError(
                    f"{shown}: Hugging Face snapshot symlink resolves to {real}, outside the repo's blobs/ directory "
                    f"{self.hf_blobs_real}",
                    where=str(shown),
                    hint="a snapshot's symlinks may only point into ../../blobs/",
                )
            if not stat.S_ISREG(st.st_mode):
                raise InputError(
                    f"{shown}: Hugging Face snapshot symlink points to {_kind_of(st.st_mode)}, not a blob file",
                    where=str(shown),
                )
            return real, st
        if not self._inside(real, self.spec_dir):
            raise InputError(
                f"{shown}: symlink resolves to {real}, outside the spec's directory {self.spec_dir}",
                where=str(shown),
                hint="links may only point inside the spec's directory, even with --follow-symlinks",
            )
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise InputError(f"{shown}: symlink points to {_kind_of(st.st_mode)}", where=str(shown))
        return real, st

    def walk(self, path: Path, st: os.stat_result, rel: str) -> None:
        """Add ``path`` (its lstat ``st``) as ``rel`` and, for a directory, everything below it.

        Iterative, so nesting depth is bounded by the file system, not Python's recursion limit. Each pending
        directory carries the (device, inode) pairs of the directories above it, to tell a loop from a mere
        second link to the same directory.
        """
        pending: list[tuple[Path, Path, str, frozenset[tuple[int, int]]]] = []
        self._add(path, st, rel, frozenset(), pending)
        while pending:
            read_dir, shown_dir, dir_rel, active = pending.pop()
            try:
                with os.scandir(read_dir) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                raise InputError(f"{shown_dir}: cannot list: {e.strerror or e}", where=str(shown_dir)) from e
            for entry in entries:
                name = entry.name
                try:
                    name.encode("utf-8")
                    bad = _BAD_NAME_CHAR.search(name) is not None
                except UnicodeEncodeError:
                    bad = True
                if bad:
                    _check_name(name, shown_dir / name)
                try:
                    entry_st = entry.stat(follow_symlinks=False)
                except OSError as e:
                    where = shown_dir / name
                    raise InputError(f"{where}: cannot stat: {e.strerror or e}", where=str(where)) from e
                child_rel = f"{dir_rel}/{name}" if dir_rel else name
                if stat.S_ISREG(entry_st.st_mode) and len(self.files) < MAX_FILES:  # the common case, kept cheap
                    self.files.append(InputFile(rel_path=child_rel, source=Path(entry.path), size=entry_st.st_size))
                    continue
                self._add(Path(entry.path), entry_st, child_rel, active, pending, shown=shown_dir / name)

    def _add(
        self,
        path: Path,
        st: os.stat_result,
        rel: str,
        active: frozenset[tuple[int, int]],
        pending: list[tuple[Path, Path, str, frozenset[tuple[int, int]]]],
        *,
        shown: Path | None = None,
    ) -> None:
        shown = shown or path
        source = path
        if stat.S_ISLNK(st.st_mode):
            source, st = self._through_symlink(path, shown)
        if stat.S_ISREG(st.st_mode):
            if len(self.files) >= MAX_FILES:
                raise InputError(f"{self.root}: more than {MAX_FILES} files in one component", where=str(self.root))
            self.files.append(InputFile(rel_path=rel, source=source, size=st.st_size))
        elif stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in active:
                raise InputError(f"{shown}: symlink loop (a directory that contains itself)", where=str(shown))
            pending.append((source, shown, rel, active | {key}))
        else:
            raise InputError(
                f"{shown}: is {_kind_of(st.st_mode)}; inputs must be regular files and directories",
                where=str(shown),
                hint="remove it from the input directory",
            )


def _check_parents(spec_dir: Path, root: Path, *, follow_symlinks: bool) -> None:
    """Refuse a component path that reaches its target through a symlinked directory below the spec's directory."""
    if follow_symlinks:
        return
    try:
        rel = root.relative_to(spec_dir)
    except ValueError:
        return  # the spec directory itself sits behind a symlink; load_spec already checked the resolved path
    current = spec_dir
    for part in rel.parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise InputError(
                f"{current}: is a symlink on the way to {root}; inputs must be reached through real directories",
                where=str(current),
                hint="point the spec at the real path, or pass --follow-symlinks",
            )


def collect_component(spec: LoadedSpec, ref: ComponentRef, *, follow_symlinks: bool = False) -> ComponentInputs:
    """List the files of one component of ``spec``."""
    root = spec.component_path(ref)
    _check_parents(spec.directory, root, follow_symlinks=follow_symlinks)
    walker = _Walker(spec.directory, root, follow_symlinks=follow_symlinks)
    try:
        st = root.lstat()
    except OSError as e:
        raise InputError(f"{root}: cannot stat: {e.strerror or e}", where=str(root)) from e
    lexical_name = root.name
    single = False
    if stat.S_ISLNK(st.st_mode):
        _, real_st = walker._through_symlink(root)  # refuses the link unless a rule allows it
        single = stat.S_ISREG(real_st.st_mode)
    else:
        single = stat.S_ISREG(st.st_mode)
    walker.walk(root, st, lexical_name if single else "")
    files = sorted(walker.files, key=lambda f: f.rel_path)
    if not files:
        raise InputError(f"{root}: holds no files; nothing to bundle for {ref.kind} {ref.name!r}", where=str(root))
    # The names rule verify applies to the signed descriptor, applied here first: create never writes a bundle
    # that verify refuses, and the error names the input file instead of a layer title.
    for f in files:
        problem = path_problem(f.rel_path)
        if problem is not None:
            raise InputError(f"{root}: {problem}", where=str(f.source), hint="rename the file")
    for first, later in collisions(f.rel_path for f in files):
        raise InputError(
            f"{root}: {later!r} collides with {first!r} (one file on a case-insensitive or normalising disk)",
            where=str(root),
            hint="rename one of them",
        )
    return ComponentInputs(
        kind=ref.kind, name=ref.name, variant=ref.variant, root=root, files=tuple(files), single_file=single
    )


def collect_inputs(spec: LoadedSpec, *, follow_symlinks: bool = False) -> list[ComponentInputs]:
    """List the files of every component of ``spec``, in spec order (models, files, builds by variant).

    Raises ``InputError`` naming the path for a symlink (outside the Hugging Face snapshot rule, unless
    ``follow_symlinks``), a device, fifo or socket, an unreadable directory or an empty component.
    """
    return [collect_component(spec, ref, follow_symlinks=follow_symlinks) for ref in spec.spec.components()]
