"""``extract_component``: a component of a verified bundle as an ordinary directory.

A model comes out as the directory an inference server (or ``model_signing verify``) expects: its files under their
original paths plus ``model.sig``, the OpenSSF model signature.

What is written is what was verified: every file is copied (never hard-linked or reflinked, so editing an extracted
file can never change the bundle or create's inputs) and hashed in the same pass as it is written; the digest of the
bytes written must equal the signed digest, else the partial output is removed and the error names the file. A blob
swapped on shared media between ``verify`` and the copy is therefore never written out. Every path is checked by
``gapseal.names`` (the signed descriptor is still untrusted input) and its final form with ``join_under`` right before
it is created. The directory appears at ``out`` only when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from gapseal.atomic import publish, remove_stale_temps, sync_filesystem, temp_prefix
from gapseal.bundler.create import prepare_output
from gapseal.bundler.descriptor import FileEntry
from gapseal.bundler.rollback import RollbackState
from gapseal.bundler.unpack import unpack_and_verify
from gapseal.bundler.verify import VerifiedBundle, verify_bundle
from gapseal.errors import BundleError, UsageError, VerificationError
from gapseal.hashing import copy_and_hash
from gapseal.names import UnsafeNameError, collisions, join_under, path_problem
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import VerifyingKey


def component_files(bundle: VerifiedBundle, kind: str, name: str, backend: str | None = None) -> list[FileEntry]:
    """The files of component ``name`` of ``kind`` (model, files, build; builds need ``backend``)."""
    d = bundle.descriptor
    if kind == "model":
        for m in d.models:
            if m.name == name:
                return [*m.files, *([m.signature] if m.signature else [])]
    elif kind == "files":
        for c in d.files:
            if c.name == name:
                return list(c.files)
    elif kind == "build":
        for b in d.builds:
            if b.name == name:
                for v in b.variants:
                    if v.backend == backend:
                        return list(v.files)
                raise UsageError(f"build {name!r} has no {backend!r} variant")
    raise UsageError(f"the bundle has no {kind} named {name!r}")


@contextlib.contextmanager
def verified_for_use(
    bundle: Path,
    trusted_keys: Sequence[VerifyingKey],
    *,
    beside: Path,
    rollback: RollbackState | None,
    allow_downgrade: bool = False,
    progress: Progress = NO_PROGRESS,
) -> Iterator[VerifiedBundle]:
    """Verify ``bundle`` for use (rollback checked, mark moved) and yield it with its blobs readable from disk.

    A directory is verified where it is. A tar or split set is unpacked and verified in one pass (every byte hashed as
    it is written) into a scratch directory beside ``beside`` (the output, so on its file system), removed afterwards.
    """
    if bundle.is_dir() and not bundle.is_symlink():
        yield verify_bundle(
            bundle, trusted_keys, rollback=rollback, allow_downgrade=allow_downgrade, record=True, progress=progress
        )
        return
    for path in remove_stale_temps(beside, "reading"):
        progress.note(f"removed {path}, left by an interrupted extract")
    try:
        scratch = Path(tempfile.mkdtemp(prefix=temp_prefix(beside, "reading"), dir=beside.parent))
    except OSError as e:
        raise BundleError(f"cannot write the output {beside}: {e.strerror or e}", where=str(beside)) from e
    try:
        try:
            result = unpack_and_verify(
                bundle,
                scratch / "layout",
                trusted_keys=trusted_keys,
                rollback=rollback,
                allow_downgrade=allow_downgrade,
                record=True,
                progress=progress,
            )
        except BundleError as e:
            if type(e) is not BundleError:  # verification and archive errors say it all already
                raise
            message = e.message.replace(str(scratch / "layout"), str(beside))  # a full disk: name the output
            raise BundleError(message, where=str(beside), hint=e.hint) from e
        if result.verified is None:  # pragma: no cover - keys are always given here
            raise VerificationError("the bundle was not verified", where=str(bundle))
        yield result.verified
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_file_paths(files: list[FileEntry], where: str) -> None:
    """Refuse the whole set before anything is written: an unsafe path, or two paths that are one file on disk."""
    for entry in files:
        problem = path_problem(entry.path)
        if problem is not None:
            raise VerificationError(
                f"the signed bundle names an unsafe file path: {problem}",
                where=where,
                hint="do not use this bundle; report it to the security team (their key signed a hostile name)",
            )
    clash = collisions(e.path for e in files)
    if clash:
        first, later = clash[0]
        raise VerificationError(
            f"the signed bundle names two files that would be one on disk: {first!r} and {later!r}",
            where=where,
            hint="do not use this bundle; report it to the security team",
        )


def extract_component(
    bundle: VerifiedBundle,
    files: list[FileEntry],
    out: Path,
    *,
    overwrite: bool = False,
    progress: Progress = NO_PROGRESS,
) -> Path:
    """Write ``files`` of a verified bundle under the new directory ``out``; return ``out``.

    Raises ``VerificationError`` for an unsafe path or a file whose bytes no longer match the signed digest (the
    partial output removed), ``BundleError`` naming ``out`` when writing fails (a full disk), ``UsageError`` for an
    output that exists without ``overwrite``.
    """
    prepare_output(out, overwrite=overwrite)
    check_file_paths(files, str(bundle.source))
    for path in remove_stale_temps(out, "extracting"):
        progress.note(f"removed {path}, left by an interrupted extract")
    try:
        work = Path(os.path.realpath(tempfile.mkdtemp(prefix=temp_prefix(out, "extracting"), dir=out.parent)))
    except OSError as e:
        raise BundleError(f"cannot write the output {out}: {e.strerror or e}", where=str(out)) from e
    try:
        made: set[Path] = set()
        for entry in files:
            try:
                target = join_under(work, entry.path, what=f"file {entry.path!r}")
            except UnsafeNameError as e:  # pragma: no cover - check_file_paths refused it already
                raise VerificationError(str(e), where=str(bundle.source)) from e
            for parent in reversed(target.relative_to(work).parents[:-1]):
                if work / parent not in made:
                    (work / parent).mkdir(exist_ok=True)
                    made.add(work / parent)
            source = bundle.blob_path(entry.digest)
            try:
                got = copy_and_hash(
                    source,
                    target,
                    progress=progress,
                    label=f"extracting {entry.path}",
                    follow_symlinks=False,
                    fsync=False,  # one sync_filesystem for all, below
                )
            except OSError as e:
                if e.filename is not None and Path(e.filename) == source:
                    raise VerificationError(
                        f"{entry.path}: its blob cannot be read since verification ({e.strerror or e})",
                        where=str(source),
                        hint="the bundle changed after it was verified; obtain a fresh copy and extract again",
                    ) from e
                raise
            if got.digest != entry.digest or got.size != entry.size:
                raise VerificationError(
                    f"{entry.path} changed after verification: the bytes read hash to {got.digest} "
                    f"({got.size} bytes), the signed bundle says {entry.digest} ({entry.size} bytes); "
                    "nothing was extracted",
                    where=str(source),
                    hint="the bundle was modified while in use; obtain a fresh copy and extract again",
                )
        for d in made:
            d.chmod(0o755)
        work.chmod(0o755)
        sync_filesystem(work)  # every file and directory durable before the rename makes them visible
        publish(work, out)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        raise BundleError(
            f"cannot write the output {out}: {e.strerror or e}; nothing was extracted",
            where=str(out),
            hint="free space on the output's file system (or choose another --out) and extract again",
        ) from e
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out
