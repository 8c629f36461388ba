"""The self-contained bundle: gapseal's own wheels inside it, and the SBOM of everything it carries.

``--include-self`` (connected side) resolves gapseal and every runtime dependency to wheels for the target Python and
platform (default: this machine's) with pip:
- gapseal itself: ``pip wheel --no-deps`` of the checkout gapseal runs from, or, for an installed gapseal, its wheel
  found in ``--wheels-from``;
- its dependencies: ``pip download --only-binary=:all:`` of that wheel (so the dependency set is the wheel's own
  metadata), from PyPI through a user cache (``$GAPSEAL_WHEEL_CACHE``, else ``$XDG_CACHE_HOME/gapseal/wheels``, else
  ``~/.cache/gapseal/wheels``), or with ``--wheels-from DIR`` from a local wheelhouse only (``--no-index
  --find-links``: no network at all; ``scripts/fetch-wheels.sh`` fills one for the tests).

The wheels are stored as the descriptor's ``wheels`` section (layer titles ``wheels/<file name>``), each a subject of
the signed statement. On the far side ``gapseal bundle extract BUNDLE --wheels --out DIR`` writes them out; a host with
only Python uses the stdlib-only ``gapseal/bundler/wheel_bootstrap.py`` instead. Then
``pip install --no-index --find-links DIR gapseal``.

``complete_descriptor`` is the hook ``create_bundle`` calls once the components are stored: it adds the wheels, then
the SBOM (``gapseal.bundler.sbom``), which therefore describes the wheels too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from gapseal.bundler.descriptor import BundleDescriptor, FileEntry, WheelFile, WheelSet
from gapseal.bundler.inputs import InputFile
from gapseal.errors import BundleError, UsageError
from gapseal.hashing import FileDigest, parallel_map
from gapseal.progress import NO_PROGRESS, Progress

MEDIA_WHEEL = "application/vnd.gapseal.python.wheel.v1+zip"
"""The layer media type of a wheel."""
_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}$")
_PLATFORM_TAG = re.compile(r"^[a-z0-9_.]+$")
_PIP_TIMEOUT = 1800


class SelfContainedError(BundleError):
    """gapseal's wheels could not be built or resolved for the target."""


@dataclass(frozen=True)
class Wheelhouse:
    """Exactly the wheels to bundle, and the target they were resolved for."""

    directory: Path
    python_version: str
    platform: str | None


class BlobSink(Protocol):
    """Where ``complete_descriptor`` stores blobs: the layout under construction (``create._BlobStore``)."""

    def add_file(self, item: tuple[str, InputFile]) -> FileDigest:
        """Store a file (hashed while linked or copied); return its digest."""

    def add_bytes(self, data: bytes) -> str:
        """Store in-memory bytes; return the digest."""


def default_cache_dir() -> Path:
    """The user cache for downloaded wheels."""
    explicit = os.environ.get("GAPSEAL_WHEEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gapseal" / "wheels"


def this_python() -> str:
    """X.Y of the running interpreter."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def checkout_dir() -> Path | None:
    """The source checkout gapseal runs from (a pyproject.toml naming gapseal beside the package), else None."""
    import gapseal

    root = Path(gapseal.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"gapseal"\s*$', pyproject.read_text()):
        return root
    return None


def _pip(args: list[str], *, what: str, progress: Progress, offline: bool) -> None:
    """Run pip; ``offline``: with no pip configuration or PIP_* variables (only the named wheelhouse counts)."""
    progress.note(what)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    if offline:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", *args],
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SelfContainedError(f"{what} failed: {e}") from e
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "is ignored" not in ln]
        tail = "\n    ".join(lines[-8:])
        raise SelfContainedError(
            f"{what} failed (pip exit {result.returncode}):\n    {tail}",
            hint="with --wheels-from, the wheelhouse must hold every dependency for the target "
            "(scripts/fetch-wheels.sh fills one); without it, PyPI must be reachable from this machine",
        )


def check_target(python_version: str | None, platform: str | None) -> tuple[str, str | None]:
    """Validate --python-version / --platform; default to this machine's."""
    version = python_version or this_python()
    if not _PYTHON_VERSION.match(version):
        raise UsageError(f"--python-version must look like 3.11, got {version!r}")
    if platform is not None and not _PLATFORM_TAG.match(platform):
        raise UsageError(f"--platform must be a wheel platform tag like manylinux_2_28_x86_64, got {platform!r}")
    return version, platform


def prepare_wheelhouse(
    out_dir: Path,
    *,
    python_version: str | None = None,
    platform: str | None = None,
    wheels_from: Path | None = None,
    cache_dir: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> Wheelhouse:
    """Put the wheels of gapseal and all its runtime dependencies for the target into the new directory ``out_dir``."""
    version, platform = check_target(python_version, platform)
    if wheels_from is not None and not wheels_from.is_dir():
        raise UsageError(f"--wheels-from is not a directory: {wheels_from}")
    out_dir.mkdir()
    index_args = ["--no-index", "--find-links", str(wheels_from)] if wheels_from is not None else []
    with tempfile.TemporaryDirectory(prefix="gapseal-wheel-") as tmp:
        own = _own_wheel(Path(tmp), index_args, wheels_from, progress)
        target = ["--python-version", version, "--only-binary=:all:"]
        if platform is not None:
            target += ["--platform", platform]
        cache = cache_dir or default_cache_dir()
        if wheels_from is None:
            cache.mkdir(parents=True, exist_ok=True)
            index_args = ["--find-links", str(cache)]
        _pip(
            ["download", "--quiet", "--dest", str(out_dir), *index_args, *target, str(own)],
            what=f"resolving gapseal's dependencies as wheels for Python {version} ({platform or 'this platform'})",
            progress=progress,
            offline=wheels_from is not None,
        )
    wheels = sorted(out_dir.glob("*.whl"))
    if not any(_wheel_name(w)[0] == "gapseal" for w in wheels):
        raise SelfContainedError("pip resolved no gapseal wheel", where=str(out_dir))
    if wheels_from is None:
        for w in wheels:
            if _wheel_name(w)[0] != "gapseal" and not (cache / w.name).exists():
                shutil.copyfile(w, cache / w.name)
    return Wheelhouse(directory=out_dir, python_version=version, platform=platform)


def _own_wheel(tmp: Path, index_args: list[str], wheels_from: Path | None, progress: Progress) -> Path:
    """The gapseal wheel: built from the checkout, or the installed version's wheel from the wheelhouse."""
    from gapseal import __version__

    root = checkout_dir()
    if root is not None:
        _pip(
            ["wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp), *index_args, str(root)],
            what=f"building the gapseal wheel from {root}",
            progress=progress,
            offline=wheels_from is not None,
        )
        built = [w for w in tmp.glob("*.whl") if _wheel_name(w)[0] == "gapseal"]
        if len(built) != 1:
            raise SelfContainedError(f"building gapseal from {root} gave {len(built)} wheels", where=str(tmp))
        return built[0]
    if wheels_from is not None:
        found = sorted(w for w in wheels_from.glob("gapseal-*.whl") if _wheel_name(w) == ("gapseal", __version__))
        if found:
            return found[0]
    raise SelfContainedError(
        f"gapseal {__version__} is installed, not run from a checkout, and no gapseal-{__version__} wheel was given",
        hint="put gapseal's wheel in the --wheels-from directory, or run gapseal from its source checkout",
    )


def _wheel_name(path: Path) -> tuple[str, str]:
    try:
        name, version, _, _ = parse_wheel_filename(path.name)
    except InvalidWheelFilename as e:
        raise SelfContainedError(f"not a wheel file name: {path.name}", where=str(path)) from e
    return str(name), str(version)


def complete_descriptor(
    descriptor: BundleDescriptor,
    store: BlobSink,
    *,
    wheels: Wheelhouse | None = None,
    sbom: bool = True,
) -> BundleDescriptor:
    """Add the wheels (if any), then the SBOM of the whole descriptor, storing their blobs in ``store``."""
    if wheels is not None:
        paths = sorted(wheels.directory.glob("*.whl"))
        items = [(f"wheels/{p.name}", InputFile(rel_path=p.name, source=p, size=p.stat().st_size)) for p in paths]
        digests = parallel_map(store.add_file, items)
        files = []
        for path, digest in zip(paths, digests, strict=True):
            name, version = _wheel_name(path)
            files.append(
                WheelFile(
                    path=path.name,
                    digest=digest.digest,
                    size=digest.size,
                    media_type=MEDIA_WHEEL,
                    name=name,
                    version=version,
                )
            )
        wheel_set = WheelSet(python_version=wheels.python_version, platform=wheels.platform, files=files)
        descriptor = descriptor.model_copy(update={"wheels": wheel_set})
    if sbom:
        from gapseal.bundler.sbom import build_sbom, sbom_entry

        data = build_sbom(descriptor)
        descriptor = descriptor.model_copy(update={"sbom": sbom_entry(data, store.add_bytes(data))})
    return descriptor


def wheel_entries(descriptor: BundleDescriptor) -> list[FileEntry]:
    """The wheels a bundle carries, for ``extract --wheels``; a bundle made without ``--include-self`` has none."""
    if descriptor.wheels is None or not descriptor.wheels.files:
        raise UsageError(
            "this bundle carries no wheels", hint="the security team adds them with 'bundle create --include-self'"
        )
    return list(descriptor.wheels.files)
