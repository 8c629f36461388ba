"""``registry load``: verify a bundle, push it and its images to the on-site registry, then prove what was pushed.

- The bundle is verified first, with the rollback check, and the use is recorded (the high-water mark moves).
- Images go to ``<image name>:<bundle version>``, the bundle (manifest, descriptor, files, signature) to
  ``gapseal/<bundle name>:<bundle version>``.
- Every blob is checked with HEAD first (size and digest must match what the registry answers) and sent only when
  no repository of this load holds it; a blob one repository holds is mounted into the others (cross-repository
  mount), so a load interrupted half-way costs only what is missing when run again. Blobs go up on a bounded
  number of threads, each in one PUT streamed from the file.
- Manifests after their blobs, by digest; the signature with its ``subject`` (a registry with the OCI 1.1 referrers
  API answers ``OCI-Subject``; without it, distribution 2.8 and Debian's ``docker-registry``, the referrers tag
  schema: an index tagged ``sha256-<hex of the manifest>`` listing the signature, merged with what it lists).
- Then everything is read back by digest (bundle manifest, signature manifest and blob, every image document) and
  checked, and only then are the version tags written, and read back: a registry that swallows a manifest is caught
  at load, not at the next pull, and a tag never names an incomplete image.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapseal.bundler import layout as oci
from gapseal.bundler.images import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES
from gapseal.bundler.registry.distribution import MAX_MANIFEST, Distribution, run_parallel
from gapseal.bundler.registry.reference import allowed_origins, bundle_repository, fallback_tag, registry_origin
from gapseal.bundler.registry.signatures import MAX_REFERRERS, signature_referrers
from gapseal.bundler.registry.transport import DEFAULT_TIMEOUT, FileBody, Limits, RegistryError, RegistryHTTP
from gapseal.bundler.rollback import RollbackState
from gapseal.bundler.verify import MAX_SIGNATURES, VerifiedBundle, verify_bundle
from gapseal.errors import UsageError, check_input
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import VerifyingKey

DEFAULT_CONCURRENCY = 4
ACCEPT_MANIFESTS = ", ".join(sorted(INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES))


@dataclass
class _BlobJob:
    digest: str
    size: int
    path: Path
    repos: list[str]


@dataclass
class LoadResult:
    """What ``load_bundle`` did."""

    bundle_reference: str
    image_references: dict[str, str]
    signature_mode: str
    """``referrers`` (the registry indexed the signature) or ``tag-schema`` (``sha256-<hex>`` index tag)."""
    blobs_sent: list[str] = field(default_factory=list)
    blobs_present: list[str] = field(default_factory=list)
    blobs_mounted: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    manifests_checked: int = 0
    """Manifests, indexes and tags read back from the registry after the push and found as pushed."""


def connect(
    host: str, *, insecure: bool, allow_hosts: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT
) -> Distribution:
    """A client for the registry ``host`` that talks only to it (and to ``allow_hosts``)."""
    if timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    return Distribution(
        RegistryHTTP(
            registry_origin(host, insecure=insecure),
            allowed=allowed_origins(allow_hosts, insecure=insecure),
            limits=Limits(timeout=timeout),
            tls_verify=not insecure,
        )
    )


def load_bundle(
    bundle: Path,
    trusted_keys: Sequence[VerifyingKey],
    registry: str,
    *,
    insecure: bool = False,
    allow_hosts: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    rollback: RollbackState | None = None,
    allow_downgrade: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress = NO_PROGRESS,
) -> LoadResult:
    """Verify ``bundle`` (a layout directory), push it and its images to ``registry``; see the module docstring."""
    client = connect(registry, insecure=insecure, allow_hosts=allow_hosts, timeout=timeout)
    if concurrency < 1:
        raise UsageError("concurrency must be at least 1")
    check_input(
        bundle,
        "bundle",
        want="directory",
        hint="unpack a bundle tar first (gapseal bundle unpack), then load the directory",
    )
    # Verified before the first request: a bundle that does not verify sends nothing anywhere.
    verified = verify_bundle(
        bundle, trusted_keys, rollback=rollback, allow_downgrade=allow_downgrade, record=True, progress=progress
    )
    try:
        client.ping()
        return push_verified(verified, client, concurrency=concurrency, progress=progress)
    finally:
        client.http.close()


class _Pusher:
    def __init__(self, client: Distribution, result: LoadResult, progress: Progress) -> None:
        self.client = client
        self.result = result
        self.progress = progress
        self.lock = threading.Lock()

    def push_blob(self, job: _BlobJob) -> None:
        """Make every repository of ``job`` hold the blob: HEAD each, mount from a holder, send if none has it."""
        task = self.progress.begin(f"blob {job.digest[7:19]} ({job.size} bytes)", job.size)
        try:
            missing = [r for r in job.repos if not self.client.blob_present(r, job.digest, job.size)]
            holder = next((r for r in job.repos if r not in missing), None)
            with self.lock:
                if holder is not None:
                    self.result.blobs_present.append(job.digest)
            for repo in missing:
                mounted = self.client.upload(
                    repo, job.digest, job.size, FileBody(job.path, job.size), mount_from=holder
                )
                with self.lock:
                    if mounted:
                        self.result.blobs_mounted.append(job.digest)
                    else:
                        self.result.blobs_sent.append(job.digest)
                        self.result.bytes_sent += job.size
                holder = holder or repo
            self.progress.advance(task, job.size)
        finally:
            self.progress.end(task)

    def push_blobs(self, jobs: list[_BlobJob], concurrency: int) -> None:
        ordered = sorted(jobs, key=lambda j: -j.size)  # largest first: the long transfers overlap the short ones
        run_parallel(self.push_blob, ordered, concurrency)


def _read_verified(verified: VerifiedBundle, digest: str) -> bytes:
    """A manifest's bytes from the verified layout, refused when they changed on disk since verification."""
    data = verified.blob_path(digest).read_bytes()
    if oci.sha256_digest(data) != digest:  # the layout changed since it was verified: push nothing unverified
        raise RegistryError(
            f"the manifest {digest} changed on disk after the bundle was verified",
            where=str(verified.source),
            hint="do not use this copy of the bundle; verify a fresh copy and load again",
        )
    return data


def push_verified(
    verified: VerifiedBundle, client: Distribution, *, concurrency: int = DEFAULT_CONCURRENCY, progress: Progress
) -> LoadResult:
    """Push an already verified bundle directory; see the module docstring."""
    d = verified.descriptor
    layout = verified.layout_dir
    if layout is None:
        raise UsageError("only a bundle directory can be loaded", where=str(verified.source))
    index = oci.Index.model_validate_json((layout / "index.json").read_bytes())
    bundle_desc = index.manifests[0]
    sig_descs = [m for m in index.manifests if m.artifact_type == oci.ARTIFACT_SIGSTORE]
    bundle_repo = bundle_repository(d.name)
    manifest_bytes = _read_verified(verified, bundle_desc.digest)
    manifest = oci.Manifest.model_validate_json(manifest_bytes)
    sigs = [(s, _read_verified(verified, s.digest)) for s in sig_descs]
    sig_manifests = [(s, data, oci.Manifest.model_validate_json(data)) for s, data in sigs]

    jobs: dict[str, _BlobJob] = {}

    def need(repo: str, digest: str, size: int) -> None:
        job = jobs.setdefault(digest, _BlobJob(digest, size, verified.blob_path(digest), []))
        if repo not in job.repos:
            job.repos.append(repo)

    for image in d.images or []:
        for m in image.manifests:
            for ib in [m.config, *m.layers]:
                need(image.name, ib.digest, ib.size)
    for blob in [
        manifest.config,
        *manifest.layers,
        *(b for _, _, sm in sig_manifests for b in [sm.config, *sm.layers]),
    ]:
        need(bundle_repo, blob.digest, blob.size)

    host = client.host
    result = LoadResult(
        bundle_reference=f"{host}/{bundle_repo}:{d.version}",
        image_references={i.name: f"{host}/{i.name}:{d.version}" for i in d.images or []},
        signature_mode="",
    )
    progress.note(f"{len(jobs)} blobs to check on {host}, {concurrency} at a time")
    _Pusher(client, result, progress).push_blobs(list(jobs.values()), concurrency)

    # Manifests by digest, after their blobs.
    pushed: list[tuple[str, str, bytes, str]] = []  # (repo, digest, bytes, media type), to read back
    for image in d.images or []:
        if image.media_type in INDEX_MEDIA_TYPES:
            for m in image.manifests:
                pushed.append((image.name, m.digest, _read_verified(verified, m.digest), m.media_type))
        pushed.append((image.name, image.digest, _read_verified(verified, image.digest), image.media_type))
    pushed.append((bundle_repo, bundle_desc.digest, manifest_bytes, oci.MEDIA_MANIFEST))
    for repo, digest, data, media in pushed:
        client.put_manifest(repo, digest, data, media)
    modes = {_attach_signature(client, bundle_repo, bundle_desc, sd, data) for sd, data, _ in sig_manifests}
    result.signature_mode = ",".join(sorted(modes))

    # Read everything back by digest before any tag names it.
    for repo, digest, data, media in pushed:
        _read_back(client, repo, digest, data, media)
        result.manifests_checked += 1
    found = {s.digest for s in signature_referrers(client, bundle_repo, bundle_desc.digest)[0]}
    for sd, data, sm in sig_manifests:
        _read_back(client, bundle_repo, sd.digest, data, oci.MEDIA_MANIFEST)
        layer = sm.layers[0]
        back = client.blob_bytes(bundle_repo, layer.digest, layer.size)
        if back != verified.blob_path(layer.digest).read_bytes():
            raise client.http.error(f"reading back the signature of {bundle_repo}: the registry returns other bytes")
        if sd.digest not in found:
            raise client.http.error(
                f"reading back the signature of {bundle_repo}@{bundle_desc.digest}: the registry does not list it "
                f"(neither the referrers API nor the {fallback_tag(bundle_desc.digest)} tag)",
                hint="the registry swallowed the signature; a pull would find the bundle unsigned",
            )
        result.manifests_checked += 1

    # Tags last, each read back.
    tags = [(i.name, i.digest, _read_verified(verified, i.digest), i.media_type) for i in d.images or []]
    tags.append((bundle_repo, bundle_desc.digest, manifest_bytes, oci.MEDIA_MANIFEST))
    for repo, digest, data, media in tags:
        client.put_manifest(repo, d.version, data, media)
        back, _ = client.manifest(repo, d.version, ACCEPT_MANIFESTS, cap=MAX_MANIFEST)
        if oci.sha256_digest(back) != digest:
            raise client.http.error(
                f"reading back {repo}:{d.version}: the registry names {oci.sha256_digest(back)}, not {digest}",
                hint="something else wrote that tag at the same time, or the registry is broken; load again",
            )
        result.manifests_checked += 1
        if repo != bundle_repo:
            progress.note(f"pushed image {repo} as {result.image_references[repo]}")
    progress.note(
        f"pushed bundle {d.name} {d.version} as {result.bundle_reference} (signature: {result.signature_mode}); "
        f"{result.manifests_checked} manifests and tags read back and checked"
    )
    return result


def _read_back(client: Distribution, repo: str, digest: str, data: bytes, media: str) -> None:
    back, _ = client.manifest(repo, digest, media, digest=digest, cap=max(len(data), 1))
    if back != data:  # pragma: no cover - the digest check above already guarantees it
        raise client.http.error(f"reading back {repo}@{digest}: other bytes")


def _attach_signature(
    client: Distribution, repo: str, subject: oci.Descriptor, sig: oci.Descriptor, data: bytes
) -> str:
    r = client.put_manifest(repo, sig.digest, data, oci.MEDIA_MANIFEST)
    if r.header("OCI-Subject") == subject.digest:
        return "referrers"
    # No referrers API: keep an index of the subject's referrers under the tag schema's tag, merging what is there.
    tag = fallback_tag(subject.digest)
    existing = signature_referrers(client, repo, subject.digest, tag_schema_only=True, all_types=True)[0]
    entry = oci.Descriptor(
        media_type=oci.MEDIA_MANIFEST, digest=sig.digest, size=len(data), artifact_type=oci.ARTIFACT_SIGSTORE
    )
    if all(e.digest != entry.digest for e in existing):
        if (
            len(existing) >= MAX_REFERRERS
            or sum(e.artifact_type == oci.ARTIFACT_SIGSTORE for e in existing) >= MAX_SIGNATURES
        ):
            raise client.http.error(
                f"{repo}:{tag} already lists {len(existing)} referrers; no room for another signature",
                hint="delete that tag; it is reserved for the referrers of the bundle manifest",
            )
        index = oci.Index(schema_version=2, media_type=oci.MEDIA_INDEX, manifests=[*existing, entry])
        client.put_manifest(repo, tag, index.to_bytes(), oci.MEDIA_INDEX)
    return "tag-schema"


def result_dict(result: LoadResult) -> dict[str, Any]:
    """``LoadResult`` as JSON-ready data."""
    return {
        "bundle": result.bundle_reference,
        "images": result.image_references,
        "signature": result.signature_mode,
        "blobs_sent": len(result.blobs_sent),
        "blobs_present": len(result.blobs_present),
        "blobs_mounted": len(result.blobs_mounted),
        "bytes_sent": result.bytes_sent,
        "manifests_checked": result.manifests_checked,
    }
