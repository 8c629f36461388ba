"""Write gapseal's wheels out of an unpacked bundle with nothing but Python's standard library.

For a host that has no gapseal yet (and no network): ``tar xf NAME.gapseal.tar -C bundle``, then
``python3 wheel_bootstrap.py bundle wheels/``, then ``python3 -m venv v && v/bin/pip install --no-index
--find-links wheels/ gapseal``, then ``v/bin/gapseal bundle verify bundle --key team.pub``.

This script imports nothing from gapseal on purpose, so it runs before gapseal is installed; copy it beside the bundle.
It checks each wheel against the digest the bundle manifest lists, but it cannot check the signature (that needs the
``cryptography`` wheel it is about to install): the ``gapseal bundle verify`` that follows is what proves the bundle,
wheels included, is the one the security team signed. If that verify fails, remove the virtual environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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


def extract_wheels(layout: Path, out: Path) -> list[Path]:
    """Copy every ``wheels/<file>`` layer of the bundle at ``layout`` into the new directory ``out``."""
    index = json.loads((layout / "index.json").read_bytes())
    named = [
        m
        for m in index.get("manifests", [])
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == "gapseal-bundle"
    ]
    if len(named) != 1:
        raise BootstrapError("index.json names no single 'gapseal-bundle' manifest")
    manifest = json.loads(_read_checked(layout, named[0]["digest"]))
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


def main(argv: list[str]) -> int:
    """``wheel_bootstrap.py BUNDLE_DIR OUT_DIR``."""
    if len(argv) != 2:
        print("usage: wheel_bootstrap.py BUNDLE_DIR OUT_DIR", file=sys.stderr)
        return 2
    try:
        written = extract_wheels(Path(argv[0]), Path(argv[1]))
    except (BootstrapError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} wheels to {argv[1]} (digests checked against the unverified bundle manifest)")
    print("next: install gapseal from them, then run 'gapseal bundle verify' on this bundle before trusting it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
