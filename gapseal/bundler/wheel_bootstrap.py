"""Write gapseal's wheels out of an unpacked bundle with nothing but Python's standard library.

It travels with the bundle: ``gapseal bundle pack`` of a bundle made with ``--include-self`` writes it beside the tar
as ``NAME.bootstrap.py`` and prints its sha256 and the bundle's manifest digest, for the security team to hand over
with the public key. On a host that has no gapseal yet (and no network)::

    sha256sum NAME.bootstrap.py                       # compare with the digest the security team gave you
    mkdir bundle && tar xf NAME.gapseal.tar -C bundle
    python3 NAME.bootstrap.py bundle wheels --expect sha256:<manifest digest>
    python3 -m venv venv && venv/bin/pip install --no-index --find-links wheels gapseal
    venv/bin/gapseal bundle verify bundle --key team.pub

This script imports nothing from gapseal on purpose, so it runs before gapseal is installed. It checks each wheel
against the digest the bundle manifest lists, and with ``--expect`` that manifest against the digest the security
team handed over, so the wheels are the signed ones before any of them is installed. It cannot check the signature
itself (that needs the ``cryptography`` wheel it is about to install): the ``gapseal bundle verify`` that follows
proves the bundle, wheels included, is the one the security team signed. If that verify fails, remove the venv.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class BootstrapError(Exception):
    """The bundle cannot give up its wheels."""


def _blob(layout: Path, digest: str) -> Path:
    if not _DIGEST.match(digest):
        raise BootstrapError(f"malformed digest {digest!r}")
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _read_checked(layout: Path, digest: str, limit: int = 64 * 1024 * 1024) -> bytes:
    path = _blob(layout, digest)
    if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
        raise BootstrapError(f"{path} is missing, a link, or too large")
    data = path.read_bytes()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise BootstrapError(f"{path} does not match its digest")
    return data


def manifest_digest(layout: Path) -> str:
    """The digest of the bundle manifest ``index.json`` names (``gapseal-bundle``), unverified."""
    index_path = layout / "index.json"
    if not index_path.is_file():
        raise BootstrapError(f"{layout} is not an unpacked bundle (no index.json): 'mkdir DIR && tar xf TAR -C DIR'")
    index = json.loads(index_path.read_bytes())
    named = [
        m
        for m in index.get("manifests", [])
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == "gapseal-bundle"
    ]
    if len(named) != 1 or not _DIGEST.match(str(named[0].get("digest"))):
        raise BootstrapError("index.json names no single 'gapseal-bundle' manifest")
    return str(named[0]["digest"])


def extract_wheels(layout: Path, out: Path, expect: str | None = None) -> list[Path]:
    """Copy every ``wheels/<file>`` layer of the bundle at ``layout`` into the new directory ``out``.

    With ``expect`` (``sha256:<hex>``), the bundle manifest must be that one: the digest the security team handed over.
    """
    digest = manifest_digest(layout)
    if expect is not None and digest != expect:
        raise BootstrapError(f"the bundle manifest is {digest}, not the expected {expect}")
    manifest = json.loads(_read_checked(layout, digest))
    wheels = []
    for layer in manifest.get("layers", []):
        title = (layer.get("annotations") or {}).get("org.opencontainers.image.title", "")
        if title.startswith("wheels/"):
            name = title.removeprefix("wheels/")
            if not _WHEEL_NAME.match(name) or name.startswith("."):
                raise BootstrapError(f"refusing wheel name {name!r}")
            wheels.append((name, layer["digest"], int(layer["size"])))
    if not wheels:
        raise BootstrapError("this bundle carries no wheels (it was not made with --include-self)")
    out.mkdir()
    written = []
    for name, digest, size in wheels:
        source = _blob(layout, digest)
        if source.is_symlink() or not source.is_file():
            raise BootstrapError(f"blob for {name} is missing or a link: {source}")
        h = hashlib.sha256()
        target = out / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                dst.write(chunk)
        if "sha256:" + h.hexdigest() != digest or target.stat().st_size != size:
            target.unlink()
            raise BootstrapError(f"{name} does not match the digest the bundle manifest lists")
        written.append(target)
    return written


def copy_script(dest: Path) -> str:
    """Write this script to ``dest`` (beside a packed bundle) and return its ``sha256:<hex>``."""
    shutil.copyfile(Path(__file__), dest)
    return "sha256:" + hashlib.sha256(dest.read_bytes()).hexdigest()


def main(argv: list[str]) -> int:
    """``bootstrap.py BUNDLE_DIR OUT_DIR [--expect sha256:<manifest digest>]``."""
    expect = None
    if len(argv) == 4 and argv[2] == "--expect" and _DIGEST.match(argv[3]):
        argv, expect = argv[:2], argv[3]
    if len(argv) != 2:
        print("usage: bootstrap.py BUNDLE_DIR OUT_DIR [--expect sha256:<manifest digest>]", file=sys.stderr)
        return 2
    try:
        written = extract_wheels(Path(argv[0]), Path(argv[1]), expect)
    except (BootstrapError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    checked = f"the manifest {expect}" if expect else "the bundle manifest (not checked against a handed-over digest)"
    print(f"wrote {len(written)} wheels to {argv[1]}, each checked against {checked}")
    print("next: install gapseal from them, then run 'gapseal bundle verify' on this bundle before trusting it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
