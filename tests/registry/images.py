"""Build real OCI image layouts for tests: by hand (multi-arch, deterministic) or with umoci (a runnable busybox)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def tool(name: str) -> str:
    """The path of a required tool; a missing one fails the test (never skips)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/system-deps.sh (make deps)")
    return path


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class BuiltImage:
    """What a builder wrote: the top document's digest and every blob digest per platform."""

    layout: Path
    tag: str
    digest: str
    media_type: str
    manifests: dict[str, str]
    """platform -> manifest digest"""
    layers: dict[str, list[str]]
    """platform -> layer digests"""
    shared_layer: str
    """The digest of a layer every platform shares."""


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        index = root / "index.json"
        self.index: dict[str, Any] = (
            json.loads(index.read_text()) if index.exists() else {"schemaVersion": 2, "manifests": []}
        )

    def blob(self, data: bytes) -> str:
        digest = _digest(data)
        (self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    def tag(self, tag: str, media_type: str, digest: str, size: int) -> None:
        self.index["manifests"] = [
            m
            for m in self.index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
        ]
        self.index["manifests"].append(
            {
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
        (self.root / "index.json").write_bytes(_json(self.index))


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic gzip'd tar layer holding ``files``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def write_image(root: Path, tag: str, platforms: list[str], *, seed: str = "app") -> BuiltImage:
    """Write an image into the OCI layout ``root``: a multi-arch index when several platforms are given.

    Every platform has two layers: one shared by all platforms (the same bytes) and one of its own.
    """
    lay = _Layout(root)
    shared = layer_tar({"etc/shared.txt": f"{seed} shared\n".encode()})
    shared_digest = lay.blob(shared)
    manifests: dict[str, str] = {}
    layers: dict[str, list[str]] = {}
    entries = []
    for platform in platforms:
        os_name, arch, *variant = platform.split("/")
        own = layer_tar({f"opt/{seed}/{arch}.txt": f"{seed} for {platform}\n".encode()})
        own_digest = lay.blob(own)
        config_doc: dict[str, object] = {
            "architecture": arch,
            "os": os_name,
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": [_digest(gzip.decompress(shared)), _digest(gzip.decompress(own))],
            },
        }
        if variant:
            config_doc["variant"] = variant[0]
        config = _json(config_doc)
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": lay.blob(config), "size": len(config)},
                "layers": [
                    {"mediaType": MEDIA_LAYER_GZIP, "digest": shared_digest, "size": len(shared)},
                    {"mediaType": MEDIA_LAYER_GZIP, "digest": own_digest, "size": len(own)},
                ],
            }
        )
        mdigest = lay.blob(manifest)
        manifests[platform] = mdigest
        layers[platform] = [shared_digest, own_digest]
        plat: dict[str, str] = {"architecture": arch, "os": os_name}
        if variant:
            plat["variant"] = variant[0]
        entries.append({"mediaType": MEDIA_MANIFEST, "digest": mdigest, "size": len(manifest), "platform": plat})
    if len(platforms) == 1:
        top_digest, top_media = manifests[platforms[0]], MEDIA_MANIFEST
        top_size = (root / "blobs" / "sha256" / top_digest.removeprefix("sha256:")).stat().st_size
    else:
        index = _json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries})
        top_digest, top_media, top_size = lay.blob(index), MEDIA_INDEX, len(index)
    lay.tag(tag, top_media, top_digest, top_size)
    return BuiltImage(root, tag, top_digest, top_media, manifests, layers, shared_digest)


def build_busybox(root: Path, tag: str = "latest") -> str:
    """Build a runnable image from scratch with umoci: Debian's static busybox as /bin/busybox; return its digest."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.fail("/bin/busybox is missing: install busybox-static (scripts/system-deps.sh)")
    umoci = tool("umoci")
    if not (root / "index.json").exists():
        subprocess.run([umoci, "init", "--layout", str(root)], check=True, capture_output=True, timeout=60)
    subprocess.run([umoci, "new", "--image", f"{root}:{tag}"], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [umoci, "insert", "--rootless", "--image", f"{root}:{tag}", str(busybox), "/bin/busybox"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            umoci,
            "config",
            "--image",
            f"{root}:{tag}",
            "--config.entrypoint",
            "/bin/busybox",
            "--architecture",
            "amd64",
            "--os",
            "linux",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    index = json.loads((root / "index.json").read_text())
    entry = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    return str(entry["digest"])
