"""Container images in a bundle: fetch an image from its source, byte for byte, into the bundle's blob store.

Sources (as a spec writes them): ``oci:DIR[:TAG]``, ``oci-archive:FILE``, ``docker-archive:FILE`` and
``docker://HOST[:PORT]/REPO:TAG``. skopeo (``copy --all --preserve-digests``) reads every source into a scratch OCI
layout, so manifests, indexes and layers keep their digests. The exception: a source whose top manifest is a Docker
v2 schema 2 manifest or list (every ``docker-archive``, and images pushed by Docker) is converted to OCI
(``--format oci``), because an OCI layout listing a Docker manifest is unreadable to skopeo and podman
(``no descriptor found``); its digest then changes (and gzip'd layers may be recompressed) and ``converted_from`` and
``source_digest`` record what it was. Then this module walks the image from its top manifest,
filters a multi-arch index by platform, re-hashes every blob and moves it into the bundle's blob store; a blob
already there (shared with another image or a model) is stored once.

With a platform filter that drops some of an index's platforms, the stored index is a new document listing only the
kept manifests (which keep their digests); ``source_digest`` records the original index's digest. From a registry,
only the kept manifests are copied (by digest), so other platforms' layers are never downloaded.

``parse_image_document`` is shared with ``verify``: both derive an image's children from the stored bytes the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapseal.bundler import layout as oci
from gapseal.bundler.inventory import KEEP_BLOB_CONTENT
from gapseal.canonical import canonical_json
from gapseal.errors import BundleError, InputError
from gapseal.hashing import hash_file
from gapseal.jsonlimits import json_problem
from gapseal.progress import NO_PROGRESS, Progress

SOURCE_TRANSPORTS = ("oci:", "oci-archive:", "docker-archive:", "docker://")
"""The image source forms a spec may use."""

INDEX_MEDIA_TYPES = frozenset({oci.MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"})
MANIFEST_MEDIA_TYPES = frozenset({oci.MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"})
MAX_IMAGE_DOCUMENT = KEEP_BLOB_CONTENT
"""Largest manifest or index accepted: what ``verify`` reads into memory (1 MiB; registries allow up to 4 MiB)."""
SKOPEO_TIMEOUT = 3600


class ImageSourceError(InputError):
    """An image source that cannot be read: missing, malformed, unreachable, or no platform matches."""


@dataclass(frozen=True)
class ChildRef:
    """A descriptor found in an image document: a manifest of an index, or a config/layer of a manifest."""

    media_type: str
    digest: str
    size: int
    platform: str | None = None
    """``os/arch[/variant]`` for a manifest in an index, when the index says."""


@dataclass(frozen=True)
class ImageDocument:
    """The parsed references of a stored manifest or index."""

    is_index: bool
    manifests: tuple[ChildRef, ...] = ()
    """For an index: its manifests, in order."""
    config: ChildRef | None = None
    """For a manifest: its config blob."""
    layers: tuple[ChildRef, ...] = ()
    """For a manifest: its layers, in order."""


def split_source(source: str) -> tuple[str, str]:
    """Split a source into (transport, rest); raise ``ValueError`` naming the accepted forms for anything else."""
    for transport in SOURCE_TRANSPORTS:
        if source.startswith(transport) and len(source) > len(transport):
            return transport.rstrip(":/").rstrip(":"), source[len(transport) :]
    raise ValueError(
        f"{source!r} is not an image source; use oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE "
        "or docker://HOST[:PORT]/REPO:TAG"
    )


def source_path(source: str) -> str | None:
    """The local path of a file-based source (the DIR of ``oci:DIR:TAG``), None for ``docker://``.

    As in skopeo, the path ends at the first ``:``; what follows names an image inside it (``oci-archive:F:TAG``,
    ``docker-archive:F:REPO:TAG``).
    """
    transport, rest = split_source(source)
    if transport == "docker":
        return None
    return rest.split(":", 1)[0]


def platform_of(value: Any) -> str | None:
    """``os/arch[/variant]`` of an OCI platform object, None when absent or malformed."""
    if not isinstance(value, dict):
        return None
    os_name, arch, variant = value.get("os"), value.get("architecture"), value.get("variant")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        return None
    return f"{os_name}/{arch}" + (f"/{variant}" if isinstance(variant, str) and variant else "")


def _child(raw: Any, where: str) -> ChildRef:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not a descriptor")
    media, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media, str) or not isinstance(digest, str) or not oci.is_digest(digest):
        raise ValueError(f"{where} has no valid mediaType and sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"{where} has no valid size")
    return ChildRef(media_type=media, digest=digest, size=size, platform=platform_of(raw.get("platform")))


def parse_image_document(data: bytes, media_type: str) -> ImageDocument:
    """Parse a manifest or index of ``media_type``; raise ``ValueError`` saying what is wrong."""
    doc, problem = json_problem(data, max_bytes=MAX_IMAGE_DOCUMENT)  # size and depth caps: signed is not trusted
    if problem is not None:
        raise ValueError(f"not usable JSON: it {problem}")
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and declared != media_type:
        raise ValueError(f"its mediaType {declared!r} differs from its descriptor's {media_type!r}")
    if media_type in INDEX_MEDIA_TYPES:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list) or not manifests:
            raise ValueError("an index with no manifests")
        children = tuple(_child(m, f"manifests[{i}]") for i, m in enumerate(manifests))
        for i, c in enumerate(children):
            if c.media_type not in MANIFEST_MEDIA_TYPES:
                raise ValueError(f"manifests[{i}] is a {c.media_type}; nested indexes are not supported")
        return ImageDocument(is_index=True, manifests=children)
    if media_type in MANIFEST_MEDIA_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ValueError("a manifest with no layers list")
        return ImageDocument(
            is_index=False,
            config=_child(doc.get("config"), "config"),
            layers=tuple(_child(layer, f"layers[{i}]") for i, layer in enumerate(layers)),
        )
    raise ValueError(f"unsupported media type {media_type!r} (expected an OCI or Docker v2 manifest or index)")


def manifest_labels(platforms: list[str | None]) -> list[str]:
    """Names of an index's manifests in subjects and messages: the platform, made unique by position if repeated."""
    raw = [p or "unknown" for p in platforms]
    return [p if raw.count(p) == 1 else f"{p}#{i}" for i, p in enumerate(raw)]


# ---------------------------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedManifest:
    """One image manifest as stored: its digest and the blobs it references."""

    platform: str | None
    media_type: str
    digest: str
    size: int
    config: ChildRef
    layers: tuple[ChildRef, ...]


@dataclass(frozen=True)
class ImportedImage:
    """An image moved into a bundle's blob store."""

    name: str
    source: str
    media_type: str
    digest: str
    size: int
    source_digest: str
    """The digest of the source's top manifest/index (differs when platforms were dropped or a Docker one converted)."""
    converted_from: str | None
    """The Docker media type of the source's top document when it was converted to OCI; None when kept as is."""
    manifests: tuple[ImportedManifest, ...]
    """For an index: every kept manifest; for a single manifest: that manifest."""

    @property
    def is_index(self) -> bool:
        """Whether the stored top document is an index."""
        return self.media_type in INDEX_MEDIA_TYPES


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        raise ImageSourceError(
            "skopeo is not installed; it reads image sources", hint="install it (scripts/system-deps.sh)"
        )
    return path


def skopeo_source_ref(source: str, spec_dir: Path) -> str:
    """The skopeo reference of a spec source, with local paths made absolute against the spec's directory."""
    transport, rest = split_source(source)
    if transport == "docker":
        return source
    path, sep, tag = rest.partition(":")
    return f"{transport}:{(spec_dir / path).absolute()}{sep}{tag}"


DOCKER_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


def _declared_media_type(raw: bytes) -> str | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    media = doc.get("mediaType") if isinstance(doc, dict) else None
    return media if isinstance(media, str) else None


def _run_skopeo(args: list[str], *, what: str, where: str, env: dict[str, str]) -> bytes:
    try:
        proc = subprocess.run(  # noqa: S603 - argument list, no shell
            [_skopeo(), *args], capture_output=True, timeout=SKOPEO_TIMEOUT, env=env, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise ImageSourceError(f"{what}: skopeo timed out after {SKOPEO_TIMEOUT} s", where=where) from e
    if proc.returncode != 0:
        raise ImageSourceError(
            f"{what}: {skopeo_reason(proc.stderr.decode(errors='replace'), proc.returncode)}",
            where=where,
            hint="check that the source exists and is an image (skopeo inspect SOURCE shows what skopeo sees)",
        )
    return proc.stdout


_LOGRUS_MSG = re.compile(r'level=\w+ msg="((?:[^"\\]|\\.)*)"')


def skopeo_reason(stderr: str, returncode: int) -> str:
    """The message of skopeo's last log line (``time=… level=fatal msg="…"``), unquoted; the raw line otherwise."""
    lines = stderr.strip().splitlines()
    if not lines:
        return f"skopeo exited with {returncode}"
    m = _LOGRUS_MSG.search(lines[-1])
    if m is None:
        return lines[-1]
    return m.group(1).replace('\\"', '"').replace("\\\\", "\\")


def _read_doc(layout: Path, digest: str, size: int, what: str, where: str) -> bytes:
    path = layout / oci.blob_path(digest)
    if size > MAX_IMAGE_DOCUMENT:
        raise ImageSourceError(f"{what} is {size} bytes, larger than any manifest should be", where=where)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageSourceError(f"{what} is missing from the copied image: {digest}", where=where) from e
    if oci.sha256_digest(data) != digest or len(data) != size:
        raise ImageSourceError(f"{what} does not match its digest {digest}", where=where)
    return data


def import_image(
    *,
    name: str,
    source: str,
    platforms: list[str] | None,
    spec_dir: Path,
    blobs_dir: Path,
    scratch: Path,
    insecure: bool = False,
    add_document: Callable[[bytes], str],
    progress: Progress = NO_PROGRESS,
) -> ImportedImage:
    """Copy the image ``source`` into ``blobs_dir`` (the bundle's ``blobs/sha256``); see the module docstring.

    ``scratch`` is a fresh directory on the same filesystem as ``blobs_dir`` (so blobs move by rename); it is
    removed afterwards. ``add_document`` stores a new in-memory document (a filtered index) and returns its digest.
    """
    where = f"images[{name}]: {source}"
    path = source_path(source)
    if path is not None and not (spec_dir / path).exists():
        raise ImageSourceError(
            f"image {name!r}: source {path!r} does not exist", where=str(spec_dir / path), hint="check the path"
        )
    layout = scratch / "layout"
    env = {**os.environ, "TMPDIR": str(scratch)}
    tls = ["--src-tls-verify=false"] if insecure else []
    ref = skopeo_source_ref(source, spec_dir)
    what = f"image {name!r}: cannot read {source}"
    progress.note(f"fetching image {name} from {source}")
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        raw = _run_skopeo(
            ["inspect", "--raw", *(["--tls-verify=false"] if insecure else []), ref], what=what, where=where, env=env
        )
        media = _declared_media_type(raw)
        if media in DOCKER_MEDIA_TYPES:
            progress.note(f"image {name}: converting its Docker manifest to OCI (the manifest digest changes)")
            args = ["copy", "--quiet", "--all", "--format", "oci", *tls]
            converted: tuple[str, str] | None = (media, oci.sha256_digest(raw))
        else:
            args = ["copy", "--quiet", "--all", "--preserve-digests", *tls]
            converted = None
        if converted is None and platforms is not None and media == oci.MEDIA_INDEX and ref.startswith("docker://"):
            # From a registry, fetch only the kept platforms' manifests and blobs, not every platform's.
            one = ["copy", "--quiet", "--preserve-digests", *tls]
            _copy_platforms(name, raw, platforms, ref, layout, one, what, where, env)
        else:
            _run_skopeo([*args, ref, f"oci:{layout}:{name}"], what=what, where=where, env=env)
        return _move_image(name, source, platforms, layout, blobs_dir, add_document, where, progress, converted)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _repository_of(ref: str) -> str:
    """``docker://host/repo`` of ``docker://host/repo:tag`` or ``docker://host/repo@sha256:…``."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1])] + last[-1].split(":", 1)[0]
    return name


def _select(doc: ImageDocument, platforms: list[str], name: str, where: str) -> list[ChildRef]:
    kept = [m for m in doc.manifests if m.platform in platforms or _base(m.platform) in platforms]
    if not kept:
        offered = ", ".join(sorted({m.platform or "unknown" for m in doc.manifests}))
        raise ImageSourceError(
            f"image {name!r}: no manifest matches platforms {', '.join(platforms)}; the source offers {offered}",
            where=where,
            hint="fix images[].platforms in the spec, or remove it to keep every platform",
        )
    return kept


def _copy_platforms(
    name: str,
    raw_index: bytes,
    platforms: list[str],
    ref: str,
    layout: Path,
    copy_args: list[str],
    what: str,
    where: str,
    env: dict[str, str],
) -> None:
    """Copy only the kept manifests of a registry's OCI index (by digest), then add the index itself as is."""
    try:
        doc = parse_image_document(raw_index, oci.MEDIA_INDEX)
    except ValueError as e:
        raise ImageSourceError(f"image {name!r}: its index is not usable: {e}", where=where) from e
    repository = _repository_of(ref)
    for i, m in enumerate(_select(doc, platforms, name, where)):
        _run_skopeo(
            [*copy_args, f"{repository}@{m.digest}", f"oci:{layout}:{name}-{i}"], what=what, where=where, env=env
        )
    digest = oci.sha256_digest(raw_index)
    (layout / oci.blob_path(digest)).write_bytes(raw_index)
    entry = {
        "mediaType": oci.MEDIA_INDEX,
        "digest": digest,
        "size": len(raw_index),
        "annotations": {oci.ANNOTATION_REF_NAME: name},
    }
    (layout / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "manifests": [entry]}))


def _move_image(
    name: str,
    source: str,
    platforms: list[str] | None,
    layout: Path,
    blobs_dir: Path,
    add_document: Callable[[bytes], str],
    where: str,
    progress: Progress,
    converted: tuple[str, str] | None,
) -> ImportedImage:
    index = json.loads((layout / "index.json").read_bytes())
    tops = [m for m in index.get("manifests", []) if m.get("annotations", {}).get(oci.ANNOTATION_REF_NAME) == name]
    if len(tops) != 1:
        raise ImageSourceError(f"image {name!r}: skopeo wrote {len(tops)} entries for it", where=where)
    top = _child(tops[0], "index.json entry")
    top_bytes = _read_doc(layout, top.digest, top.size, f"image {name!r} top manifest", where)
    try:
        doc = parse_image_document(top_bytes, top.media_type)
    except ValueError as e:
        raise ImageSourceError(f"image {name!r}: its top manifest is not usable: {e}", where=where) from e

    stored_media, stored_digest, stored_size = top.media_type, top.digest, top.size
    manifests: list[ImportedManifest] = []
    if doc.is_index:
        kept = list(doc.manifests) if platforms is None else _select(doc, platforms, name, where)
        if len(kept) != len(doc.manifests):
            filtered = json.loads(top_bytes)
            filtered["manifests"] = [m for m, c in zip(filtered["manifests"], doc.manifests, strict=True) if c in kept]
            new_bytes = canonical_json(filtered)
            stored_digest, stored_size = add_document(new_bytes), len(new_bytes)
        else:
            _move_blob(layout, blobs_dir, top, f"image {name!r} index", where)
        for m in kept:
            manifests.append(_move_manifest(name, m, m.platform, layout, blobs_dir, where, progress))
    else:
        if platforms is not None:
            config = json.loads(_read_doc(layout, doc.config.digest, doc.config.size, "config", where))  # type: ignore[union-attr]
            platform = platform_of(config)
            if platform not in platforms and _base(platform) not in platforms:
                raise ImageSourceError(
                    f"image {name!r}: it is a single-platform image for {platform or 'an unknown platform'}, "
                    f"which matches none of the platforms {', '.join(platforms)}",
                    where=where,
                    hint="fix images[].platforms in the spec, or remove it",
                )
        manifests.append(_move_manifest(name, top, None, layout, blobs_dir, where, progress))
    return ImportedImage(
        name=name,
        source=source,
        media_type=stored_media,
        digest=stored_digest,
        size=stored_size,
        source_digest=converted[1] if converted else top.digest,
        converted_from=converted[0] if converted else None,
        manifests=tuple(manifests),
    )


def _base(platform: str | None) -> str | None:
    """``linux/arm64`` for ``linux/arm64/v8``: a spec's ``linux/arm64`` keeps every variant."""
    if platform is None:
        return None
    return "/".join(platform.split("/")[:2])


def _move_manifest(
    name: str, ref: ChildRef, platform: str | None, layout: Path, blobs_dir: Path, where: str, progress: Progress
) -> ImportedManifest:
    label = f"image {name!r}" + (f" {platform}" if platform else "")
    data = _read_doc(layout, ref.digest, ref.size, f"{label} manifest", where)
    try:
        doc = parse_image_document(data, ref.media_type)
    except ValueError as e:
        raise ImageSourceError(f"{label}: its manifest is not usable: {e}", where=where) from e
    assert doc.config is not None  # noqa: S101 - a manifest always has a config
    _move_blob(layout, blobs_dir, doc.config, f"{label} config", where)
    for i, layer in enumerate(doc.layers):
        progress.note(f"storing {label} layer {i} ({layer.size} bytes)")
        _move_blob(layout, blobs_dir, layer, f"{label} layer {i}", where)
    _move_blob(layout, blobs_dir, ref, f"{label} manifest", where)
    return ImportedManifest(
        platform=platform,
        media_type=ref.media_type,
        digest=ref.digest,
        size=ref.size,
        config=doc.config,
        layers=doc.layers,
    )


def _move_blob(layout: Path, blobs_dir: Path, ref: ChildRef, what: str, where: str) -> None:
    """Move one blob into the store after hashing it (never trust a name); a blob already stored is kept once."""
    target = blobs_dir / ref.digest.removeprefix("sha256:")
    src = layout / oci.blob_path(ref.digest)
    if target.exists():
        return
    if not src.is_file():
        raise ImageSourceError(f"{what} is missing from the copied image: {ref.digest}", where=where)
    digest = hash_file(src)
    if digest.digest != ref.digest or digest.size != ref.size:
        raise ImageSourceError(
            f"{what} does not match its descriptor: {ref.digest} ({ref.size} bytes) hashes to {digest.digest} "
            f"({digest.size} bytes)",
            where=where,
        )
    os.replace(src, target)


__all__ = [
    "BundleError",
    "ChildRef",
    "ImageDocument",
    "ImageSourceError",
    "ImportedImage",
    "ImportedManifest",
    "import_image",
    "manifest_labels",
    "parse_image_document",
    "split_source",
]
