"""The on-site registry: load a verified bundle into an OCI registry, and pull a bundle back out of one.

Registry I/O goes through the PyPI ``oras`` package (``oras.provider.Registry``: URLs, auth, blob existence,
monolithic and chunked uploads, blob streams); this module adds what a bundle needs on top:

- ``load_bundle`` verifies the bundle first, then pushes every image to ``<image name>:<bundle version>`` and the
  bundle itself (manifest, descriptor, file blobs, signature) to ``gapseal/<bundle name>:<bundle version>``. Every
  blob is checked with HEAD first and sent only when missing (a blob one repository already received is mounted
  into the next), so a load interrupted half-way costs only what is missing when run again. Blobs go up on a
  bounded number of threads, manifests after their blobs, tags last, so a tag never names an incomplete image.
- The signature manifest is pushed by digest with its ``subject``; a registry with the OCI 1.1 referrers API
  answers with an ``OCI-Subject`` header and indexes it. Without that header (distribution 2.8 and Debian's
  ``docker-registry``), the referrers tag schema is used: an image index tagged ``sha256-<hex of the manifest>``
  listing the signature, merged with whatever that tag already lists.
- ``pull_bundle`` fetches a bundle by tag, its signatures (referrers API, else the tag schema), and every image of
  its descriptor by digest, checking each blob's digest as it streams, into a temporary directory beside ``--out``
  renamed into place only when complete. It does not judge the signature: ``verify`` does.

Only the host the user names is contacted; every request has a timeout and no request is retried behind the
user's back (oras-py's default retry sleeps for minutes on a refused connection).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oras.container
import oras.provider
import requests
from requests.adapters import HTTPAdapter

from gapseal.bundler import layout as oci
from gapseal.bundler.create import prepare_output
from gapseal.bundler.descriptor import BundleDescriptor
from gapseal.bundler.images import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, MAX_IMAGE_DOCUMENT, parse_image_document
from gapseal.bundler.statement import image_index_entries
from gapseal.bundler.verify import VerifiedBundle, verify_bundle
from gapseal.errors import BundleError, UsageError
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import VerifyingKey

BUNDLE_REPOSITORY_PREFIX = "gapseal/"
"""Bundles live in ``gapseal/<bundle name>``; images in a repository named after the image."""
DEFAULT_CONCURRENCY = 4
CHUNK = 1024 * 1024
MONOLITHIC_LIMIT = 64 * 1024 * 1024
"""Blobs up to this size go up in one PUT (read into memory); larger ones in chunks of this size."""
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0
_ACCEPT_MANIFESTS = ", ".join(sorted(INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES))
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")
_REPO = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class RegistryError(BundleError):
    """A registry that cannot be reached, refuses a request, or serves content that does not match its digest."""


# ---------------------------------------------------------------------------------------------------------------
# The client: oras-py's Registry without its sleeping retries, with timeouts
# ---------------------------------------------------------------------------------------------------------------


class _TimeoutAdapter(HTTPAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (CONNECT_TIMEOUT, READ_TIMEOUT)
        return super().send(request, **kwargs)


class _Client(oras.provider.Registry):  # type: ignore[misc]
    """oras-py's registry client; requests fail at once (a rerun resumes), each with a timeout."""

    do_request = oras.provider.Registry.do_request.__wrapped__

    def __init__(self, host: str, *, insecure: bool) -> None:
        super().__init__(hostname=host, insecure=insecure, tls_verify=not insecure)
        adapter = _TimeoutAdapter(pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.host = host

    def request(self, method: str, url_path: str, *, what: str, **kwargs: Any) -> requests.Response:
        """Issue one request to ``/v2/...`` on the registry; connection failures become ``RegistryError``."""
        url = f"{self.prefix}://{self.host}{url_path}" if url_path.startswith("/") else url_path
        try:
            return self.do_request(url, method, **kwargs)  # type: ignore[no-any-return]
        except requests.exceptions.SSLError as e:
            raise RegistryError(
                f"{what}: TLS failed with {self.host}: {_reason(e)}",
                where=self.host,
                hint="for a registry serving plain HTTP or a self-signed certificate, pass --insecure",
            ) from e
        except requests.exceptions.RequestException as e:
            raise RegistryError(
                f"{what}: cannot reach the registry at {self.host}: {_reason(e)}",
                where=self.host,
                hint="check --registry (host and port) and that the registry is running; a load that stopped "
                "half-way resumes where it stopped when run again",
            ) from e
        except ValueError as e:  # oras-py: an authentication challenge it cannot answer
            raise RegistryError(f"{what}: {e}", where=self.host) from e

    def container(self, repo: str, ref: str | None = None) -> oras.container.Container:
        """An oras container for ``repo`` (and a tag or digest) on this registry."""
        name = repo if ref is None else (f"{repo}@{ref}" if ref.startswith("sha256:") else f"{repo}:{ref}")
        return oras.container.Container(name, registry=self.host)


def _reason(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "timed out", "Name or service not known", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _fail(response: requests.Response, what: str, host: str) -> RegistryError:
    detail = ""
    try:
        errors = response.json().get("errors", [])
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    except ValueError:
        detail = response.text[:200]
    return RegistryError(
        f"{what}: the registry answered {response.status_code} {response.reason}" + (f" ({detail})" if detail else ""),
        where=host,
        hint="check that the registry accepts pushes here; run the command again to resume",
    )


def _is_registry_host(value: str) -> bool:
    """A registry host as image references spell it: has a port or a dot, or is ``localhost`` (never a bare name)."""
    return bool(_HOST.match(value)) and ("." in value or ":" in value or value == "localhost")


def parse_registry(value: str) -> str:
    """Check a ``HOST[:PORT]`` given on the command line."""
    if not _is_registry_host(value):
        raise UsageError(f"{value!r} is not a registry address; use HOST:PORT (e.g. 127.0.0.1:5000)")
    return value


def ping(client: _Client) -> None:
    """Check the registry speaks the distribution API before any work (GET /v2/)."""
    r = client.request("GET", "/v2/", what="checking the registry")
    if r.status_code not in (200, 401):
        raise _fail(r, f"{client.host} is not an OCI registry (GET /v2/)", client.host)


# ---------------------------------------------------------------------------------------------------------------
# Push
# ---------------------------------------------------------------------------------------------------------------


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


class _Pusher:
    def __init__(self, client: _Client, progress: Progress, concurrency: int) -> None:
        self.client = client
        self.progress = progress
        self.concurrency = concurrency
        self.lock = threading.Lock()

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.client.request("HEAD", f"/v2/{repo}/blobs/{digest}", what=f"checking blob {digest} in {repo}")
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise _fail(r, f"checking blob {digest} in {repo}", self.client.host)

    def mount(self, repo: str, digest: str, source_repo: str) -> bool:
        r = self.client.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source_repo}",
            what=f"mounting blob {digest} into {repo}",
        )
        if r.status_code == 201:
            return True
        if r.status_code == 202:  # the registry opened an upload instead; abandon it and upload normally
            location = r.headers.get("Location")
            if location:
                self.client.request("DELETE", _absolute(self.client, location), what="cancelling an upload")
            return False
        raise _fail(r, f"mounting blob {digest} into {repo}", self.client.host)

    def upload(self, repo: str, job: _BlobJob) -> None:
        what = f"uploading blob {job.digest} ({job.size} bytes) to {repo}"
        container = self.client.container(repo)
        layer = {"digest": job.digest, "size": job.size}
        try:
            if job.size <= MONOLITHIC_LIMIT:
                r = self.client.put_upload(str(job.path), container, layer)
            else:
                r = self.client.chunked_upload(str(job.path), container, layer, chunk_size=MONOLITHIC_LIMIT)
        except requests.exceptions.RequestException as e:
            raise RegistryError(f"{what}: {_reason(e)}", where=self.client.host, hint="run again to resume") from e
        except ValueError as e:  # oras-py: no upload session (Location) or a failed chunk
            raise RegistryError(f"{what}: {e}", where=self.client.host, hint="run again to resume") from e
        if r.status_code not in (201, 204):
            raise _fail(r, what, self.client.host)

    def push_blob(self, job: _BlobJob, result: LoadResult) -> None:
        task = self.progress.begin(f"blob {job.digest[7:19]} ({job.size} bytes)", job.size)
        try:
            first = job.repos[0]
            if self.blob_exists(first, job.digest):
                with self.lock:
                    result.blobs_present.append(job.digest)
            else:
                self.upload(first, job)
                with self.lock:
                    result.blobs_sent.append(job.digest)
                    result.bytes_sent += job.size
            for repo in job.repos[1:]:
                if self.blob_exists(repo, job.digest):
                    continue
                if self.mount(repo, job.digest, first):
                    with self.lock:
                        result.blobs_mounted.append(job.digest)
                else:
                    self.upload(repo, job)
                    with self.lock:
                        result.blobs_sent.append(job.digest)
                        result.bytes_sent += job.size
            self.progress.advance(task, job.size)
        finally:
            self.progress.end(task)

    def push_blobs(self, jobs: Iterable[_BlobJob], result: LoadResult) -> None:
        ordered = sorted(jobs, key=lambda j: -j.size)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self.push_blob, job, result) for job in ordered]
            errors = []
            for f in futures:
                exc = f.exception()
                if exc is not None:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str, digest: str) -> requests.Response:
        what = f"pushing manifest {ref} to {repo}"
        if oci.sha256_digest(data) != digest:  # the layout changed since it was verified: push nothing unverified
            raise RegistryError(
                f"{what}: the manifest {digest} changed on disk after the bundle was verified",
                hint="do not use this copy of the bundle; verify a fresh copy and load again",
            )
        r = self.client.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", what=what, data=data, headers={"Content-Type": media_type}
        )
        if r.status_code != 201:
            raise _fail(r, what, self.client.host)
        return r


def _absolute(client: _Client, location: str) -> str:
    return location if location.startswith("http") else f"{client.prefix}://{client.host}{location}"


def bundle_repository(name: str) -> str:
    """The repository a bundle named ``name`` is pushed to."""
    return f"{BUNDLE_REPOSITORY_PREFIX}{name}"


def load_bundle(
    bundle: Path,
    trusted_keys: Sequence[VerifyingKey],
    registry: str,
    *,
    insecure: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress = NO_PROGRESS,
) -> LoadResult:
    """Verify ``bundle`` (a layout directory), then push it and its images to ``registry``; see the module docstring."""
    registry = parse_registry(registry)
    if concurrency < 1:
        raise UsageError("concurrency must be at least 1")
    if not bundle.is_dir():
        raise UsageError(
            f"{bundle} is not a bundle directory",
            hint="unpack a bundle tar first (gapseal bundle unpack), then load the directory",
        )
    verified = verify_bundle(bundle, trusted_keys, progress=progress)
    client = _Client(registry, insecure=insecure)
    ping(client)
    return _push_verified(verified, client, concurrency=concurrency, progress=progress)


def _push_verified(verified: VerifiedBundle, client: _Client, *, concurrency: int, progress: Progress) -> LoadResult:
    d = verified.descriptor
    layout = verified.layout_dir
    assert layout is not None  # noqa: S101 - load_bundle verified a directory
    index = oci.Index.model_validate_json((layout / "index.json").read_bytes())
    bundle_desc = index.manifests[0]
    sig_descs = [m for m in index.manifests if m.artifact_type == oci.ARTIFACT_SIGSTORE]
    bundle_repo = bundle_repository(d.name)
    manifest = oci.Manifest.model_validate_json(verified.blob_path(bundle_desc.digest).read_bytes())
    sig_manifests = [
        (s, oci.Manifest.model_validate_json(verified.blob_path(s.digest).read_bytes())) for s in sig_descs
    ]

    jobs: dict[str, _BlobJob] = {}

    def need(repo: str, digest: str, size: int) -> None:
        job = jobs.setdefault(digest, _BlobJob(digest, size, verified.blob_path(digest), []))
        if repo not in job.repos:
            job.repos.append(repo)

    for image in d.images or []:
        for m in image.manifests:
            need(image.name, m.config.digest, m.config.size)
            for layer in m.layers:
                need(image.name, layer.digest, layer.size)
    for blob in [manifest.config, *manifest.layers]:
        need(bundle_repo, blob.digest, blob.size)
    for _, sm in sig_manifests:
        for blob in [sm.config, *sm.layers]:
            need(bundle_repo, blob.digest, blob.size)

    result = LoadResult(
        bundle_reference=f"{client.host}/{bundle_repo}:{d.version}",
        image_references={i.name: f"{client.host}/{i.name}:{d.version}" for i in d.images or []},
        signature_mode="",
    )
    progress.note(f"{len(jobs)} blobs to check on {client.host}, {concurrency} at a time")
    pusher = _Pusher(client, progress, concurrency)
    pusher.push_blobs(jobs.values(), result)

    # Manifests after their blobs; a tag only once everything under it is there.
    for image in d.images or []:
        if image.media_type in INDEX_MEDIA_TYPES:
            for m in image.manifests:
                data = verified.blob_path(m.digest).read_bytes()
                pusher.put_manifest(image.name, m.digest, data, m.media_type, m.digest)
        data = verified.blob_path(image.digest).read_bytes()
        pusher.put_manifest(image.name, d.version, data, image.media_type, image.digest)
        progress.note(f"pushed image {image.name} as {result.image_references[image.name]}")
    manifest_bytes = verified.blob_path(bundle_desc.digest).read_bytes()
    pusher.put_manifest(bundle_repo, bundle_desc.digest, manifest_bytes, oci.MEDIA_MANIFEST, bundle_desc.digest)
    modes = set()
    for sd, _ in sig_manifests:
        modes.add(_attach_signature(pusher, bundle_repo, bundle_desc, sd, verified.blob_path(sd.digest).read_bytes()))
    pusher.put_manifest(bundle_repo, d.version, manifest_bytes, oci.MEDIA_MANIFEST, bundle_desc.digest)
    result.signature_mode = ",".join(sorted(modes))
    progress.note(
        f"pushed bundle {d.name} {d.version} as {result.bundle_reference} (signature: {result.signature_mode})"
    )
    return result


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for the referrers of ``digest``: ``sha256-<hex>``."""
    return digest.replace(":", "-")


def _attach_signature(
    pusher: _Pusher, repo: str, subject: oci.Descriptor, sig: oci.Descriptor, sig_bytes: bytes
) -> str:
    r = pusher.put_manifest(repo, sig.digest, sig_bytes, oci.MEDIA_MANIFEST, sig.digest)
    if r.headers.get("OCI-Subject") == subject.digest:
        return "referrers"
    # No referrers API: keep an index of the subject's referrers under the tag schema's tag, merging what is there.
    tag = fallback_tag(subject.digest)
    client = pusher.client
    got = client.request(
        "GET", f"/v2/{repo}/manifests/{tag}", what=f"reading {repo}:{tag}", headers={"Accept": oci.MEDIA_INDEX}
    )
    existing: list[oci.Descriptor] = []
    if got.status_code == 200:
        try:
            existing = oci.Index.model_validate_json(got.content).manifests
        except ValueError as e:
            raise RegistryError(
                f"{repo}:{tag} exists but is not a referrers index",
                where=client.host,
                hint="delete that tag; it is reserved for the referrers of the bundle manifest",
            ) from e
    elif got.status_code != 404:
        raise _fail(got, f"reading {repo}:{tag}", client.host)
    entry = oci.Descriptor(
        media_type=oci.MEDIA_MANIFEST, digest=sig.digest, size=len(sig_bytes), artifact_type=oci.ARTIFACT_SIGSTORE
    )
    if all(e.digest != entry.digest for e in existing):
        index = oci.Index(schema_version=2, media_type=oci.MEDIA_INDEX, manifests=[*existing, entry])
        data = index.to_bytes()
        pusher.put_manifest(repo, tag, data, oci.MEDIA_INDEX, oci.sha256_digest(data))
    return "tag-schema"


# ---------------------------------------------------------------------------------------------------------------
# Pull
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PulledBundle:
    """What ``pull_bundle`` wrote."""

    path: Path
    manifest_digest: str
    name: str
    version: str
    blobs: int
    bytes: int
    signature_mode: str


def parse_reference(reference: str) -> tuple[str, str, str]:
    """Split ``HOST:PORT/REPO:TAG`` into (host, repo, tag)."""
    host, sep, rest = reference.partition("/")
    repo, _, tag = rest.rpartition(":")
    if not sep or "/" in tag or not _is_registry_host(host) or not _REPO.match(repo) or not _TAG.match(tag):
        raise UsageError(
            f"{reference!r} is not a bundle reference; use HOST:PORT/gapseal/NAME:VERSION",
            hint="e.g. 127.0.0.1:5000/gapseal/clinic:1.0.0",
        )
    return host, repo, tag


class _Puller:
    def __init__(self, client: _Client, blobs: Path, progress: Progress) -> None:
        self.client = client
        self.blobs = blobs
        self.progress = progress
        self.count = 0
        self.bytes = 0
        self.lock = threading.Lock()

    def manifest(self, repo: str, ref: str, accept: str, *, digest: str | None = None) -> tuple[bytes, str]:
        """Fetch a manifest; when ``ref`` is a digest its bytes must hash to it. Stored as a blob; (bytes, media)."""
        what = f"fetching manifest {repo}:{ref}" if digest is None else f"fetching manifest {repo}@{ref}"
        r = self.client.request("GET", f"/v2/{repo}/manifests/{ref}", what=what, headers={"Accept": accept})
        if r.status_code == 404:
            raise RegistryError(
                f"{what}: not found on {self.client.host}", where=self.client.host, hint="check the name and version"
            )
        if r.status_code != 200:
            raise _fail(r, what, self.client.host)
        data = r.content
        if len(data) > MAX_IMAGE_DOCUMENT:
            raise RegistryError(f"{what}: {len(data)} bytes, larger than any manifest", where=self.client.host)
        actual = oci.sha256_digest(data)
        if digest is not None and actual != digest:
            raise RegistryError(
                f"the registry returned a manifest that does not match its digest: {repo}@{digest} hashes to {actual}",
                where=self.client.host,
                hint="the registry or something between it and you altered it; nothing was written to --out",
            )
        self._store(data, actual)
        media = r.headers.get("Content-Type", "").split(";")[0].strip()
        return data, media

    def _store(self, data: bytes, digest: str) -> None:
        target = self.blobs / digest.removeprefix("sha256:")
        if not target.exists():
            tmp = self.blobs.parent / f".{uuid.uuid4().hex}"
            tmp.write_bytes(data)
            os.replace(tmp, target)
            with self.lock:
                self.count += 1
                self.bytes += len(data)

    def blob(self, repo: str, digest: str, size: int) -> None:
        """Stream one blob into the store, hashing as it arrives; a wrong digest or size is refused."""
        target = self.blobs / digest.removeprefix("sha256:")
        if target.exists():
            return
        what = f"fetching blob {digest} from {repo}"
        task = self.progress.begin(f"blob {digest[7:19]} ({size} bytes)", size)
        tmp = self.blobs.parent / f".{uuid.uuid4().hex}"
        try:
            r = self.client.request("GET", f"/v2/{repo}/blobs/{digest}", what=what, stream=True)
            with r:
                if r.status_code != 200:
                    raise _fail(r, what, self.client.host)
                h = hashlib.sha256()
                n = 0
                with open(tmp, "xb") as f:  # noqa: PTH123 - "x": never clobber
                    try:
                        for chunk in r.iter_content(chunk_size=CHUNK):
                            n += len(chunk)
                            if n > size:
                                break
                            h.update(chunk)
                            f.write(chunk)
                            self.progress.advance(task, len(chunk))
                    except requests.exceptions.RequestException as e:
                        raise RegistryError(f"{what}: {_reason(e)}", where=self.client.host) from e
            actual = "sha256:" + h.hexdigest()
            if n != size or actual != digest:
                wrong = f"it hashes to {actual}" if n == size else f"{'over ' if n > size else ''}{n} bytes, not {size}"
                raise RegistryError(
                    f"the registry returned blob {digest} of {repo} with other content: {wrong}",
                    where=self.client.host,
                    hint="the registry or something between it and you altered the blob; nothing was written to "
                    "--out; repair the registry (load the bundle again) and pull again",
                )
            os.replace(tmp, target)
            with self.lock:
                self.count += 1
                self.bytes += size
        finally:
            tmp.unlink(missing_ok=True)
            self.progress.end(task)

    def blobs_parallel(self, items: list[tuple[str, str, int]], concurrency: int) -> None:
        unique = {d: (repo, d, s) for repo, d, s in items}
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = [pool.submit(self.blob, *item) for item in unique.values()]
            errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            raise errors[0]


def _signature_descriptors(puller: _Puller, repo: str, subject: str) -> tuple[list[oci.Descriptor], str]:
    """The signature referrers of ``subject``: from the referrers API, else from the referrers tag schema."""
    client = puller.client
    what = f"finding the signature of {repo}@{subject}"
    attempts = (
        ("referrers", f"/v2/{repo}/referrers/{subject}?artifactType={oci.ARTIFACT_SIGSTORE}"),
        # No referrers API, or nothing listed there (pushed before the registry had one): the tag schema.
        ("tag-schema", f"/v2/{repo}/manifests/{fallback_tag(subject)}"),
    )
    for mode, path in attempts:
        r = client.request("GET", path, what=what, headers={"Accept": oci.MEDIA_INDEX})
        if r.status_code == 404 or (mode == "referrers" and r.status_code != 200):
            continue
        if r.status_code != 200:
            raise _fail(r, what, client.host)
        if not r.headers.get("Content-Type", "").startswith(oci.MEDIA_INDEX):
            continue
        try:
            found = oci.Index.model_validate_json(r.content).manifests
        except ValueError as e:
            raise RegistryError(f"{what}: the registry's referrers index is malformed", where=client.host) from e
        sigs = [d for d in found if d.artifact_type == oci.ARTIFACT_SIGSTORE]
        if sigs:
            return sigs, mode
    return [], "none"


def pull_bundle(
    reference: str,
    out: Path,
    *,
    insecure: bool = False,
    overwrite: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress = NO_PROGRESS,
) -> PulledBundle:
    """Fetch the bundle ``HOST:PORT/gapseal/NAME:VERSION`` with its signatures and images into ``out``."""
    host, repo, tag = parse_reference(reference)
    prepare_output(out, overwrite=overwrite)
    client = _Client(host, insecure=insecure)
    ping(client)
    work = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    (work / "blobs" / "sha256").mkdir(parents=True)
    try:
        puller = _Puller(client, work / "blobs" / "sha256", progress)
        manifest_bytes, _ = puller.manifest(repo, tag, oci.MEDIA_MANIFEST)
        manifest_digest = oci.sha256_digest(manifest_bytes)
        try:
            manifest = oci.Manifest.model_validate_json(manifest_bytes)
        except ValueError as e:
            raise RegistryError(f"{reference} is not a gapseal bundle manifest", where=host) from e
        if manifest.artifact_type != oci.ARTIFACT_BUNDLE or manifest.config.media_type != oci.MEDIA_BUNDLE_CONFIG:
            raise RegistryError(f"{reference} is not a gapseal bundle (artifactType {manifest.artifact_type})")
        puller.blobs_parallel(
            [(repo, d.digest, d.size) for d in [manifest.config, *manifest.layers]], concurrency=concurrency
        )
        sigs, mode = _signature_descriptors(puller, repo, manifest_digest)
        if not sigs:
            raise RegistryError(
                f"{reference} has no signature on {host} "
                f"(neither a referrer nor a {fallback_tag(manifest_digest)} tag)",
                where=host,
                hint="load the bundle into this registry again with gapseal registry load",
            )
        sig_entries = []
        for sd in sigs:
            data, _ = puller.manifest(repo, sd.digest, oci.MEDIA_MANIFEST, digest=sd.digest)
            sm = oci.Manifest.model_validate_json(data)
            puller.blobs_parallel([(repo, b.digest, b.size) for b in [sm.config, *sm.layers]], concurrency=concurrency)
            sig_entries.append(oci.Descriptor(media_type=oci.MEDIA_MANIFEST, digest=sd.digest, size=len(data)))
        descriptor = BundleDescriptor.load((work / oci.blob_path(manifest.config.digest)).read_bytes())
        for image in descriptor.images or []:
            if not _REPO.match(image.name):
                raise RegistryError(f"the bundle names an image {image.name!r} that is no repository name")
            _pull_image(puller, image.name, image.digest, image.media_type, concurrency)
        bundle_entry = oci.Descriptor(media_type=oci.MEDIA_MANIFEST, digest=manifest_digest, size=len(manifest_bytes))
        index = oci.build_index(bundle_entry, sig_entries, image_index_entries(descriptor))
        (work / "index.json").write_bytes(index.to_bytes())
        (work / "oci-layout").write_bytes(oci.OCI_LAYOUT_BYTES)
        if out.exists() and overwrite:
            shutil.rmtree(out) if out.is_dir() and not out.is_symlink() else out.unlink()
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return PulledBundle(
        path=out,
        manifest_digest=manifest_digest,
        name=descriptor.name,
        version=descriptor.version,
        blobs=puller.count,
        bytes=puller.bytes,
        signature_mode=mode,
    )


def _pull_image(puller: _Puller, repo: str, digest: str, media_type: str, concurrency: int) -> None:
    data, _ = puller.manifest(repo, digest, _ACCEPT_MANIFESTS, digest=digest)
    try:
        doc = parse_image_document(data, media_type)
        children: list[tuple[bytes, str]] = [(data, media_type)]
        if doc.is_index:
            children = [
                (puller.manifest(repo, m.digest, _ACCEPT_MANIFESTS, digest=m.digest)[0], m.media_type)
                for m in doc.manifests
            ]
        blobs: list[tuple[str, str, int]] = []
        for child, child_media in children:
            mdoc = parse_image_document(child, child_media)
            assert mdoc.config is not None  # noqa: S101 - a manifest always has a config
            blobs += [(repo, b.digest, b.size) for b in [mdoc.config, *mdoc.layers]]
    except ValueError as e:
        raise RegistryError(f"image {repo}@{digest} on the registry is malformed: {e}") from e
    puller.blobs_parallel(blobs, concurrency=concurrency)


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
    }


__all__ = [
    "LoadResult",
    "PulledBundle",
    "RegistryError",
    "bundle_repository",
    "fallback_tag",
    "load_bundle",
    "parse_reference",
    "parse_registry",
    "pull_bundle",
    "result_dict",
]
