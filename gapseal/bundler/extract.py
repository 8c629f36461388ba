"""``extract_component``: a component of a verified bundle as an ordinary directory.

A model comes out as the directory an inference server (or ``model_signing verify``) expects: its files under their
original paths plus ``model.sig``, the OpenSSF model signature. Files are hard-linked from the layout where the
filesystem allows, else copied and re-hashed on the way, and the directory appears only when complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from gapseal.bundler.create import prepare_output
from gapseal.bundler.descriptor import FileEntry
from gapseal.bundler.verify import VerifiedBundle
from gapseal.errors import UsageError, VerificationError
from gapseal.hashing import copy_and_hash
from gapseal.progress import NO_PROGRESS, Progress


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


def extract_component(
    bundle: VerifiedBundle,
    files: list[FileEntry],
    out: Path,
    *,
    overwrite: bool = False,
    progress: Progress = NO_PROGRESS,
) -> Path:
    """Write ``files`` of a verified bundle under ``out``; return ``out``."""
    prepare_output(out, overwrite=overwrite)
    work = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        for entry in files:
            target = work / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            source = bundle.blob_path(entry.digest)
            try:
                os.link(source, target)
            except OSError:
                got = copy_and_hash(source, target, progress=progress, label=f"copying {entry.path}")
                if got.digest != entry.digest:
                    raise VerificationError(
                        f"{entry.path} changed after verification (now {got.digest})", where=str(source)
                    ) from None
        if out.exists() and overwrite:
            shutil.rmtree(out)
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out
