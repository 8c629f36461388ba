"""The OCI distribution API calls gapseal makes, over ``RegistryHTTP`` (one host, capped reads, deadlines).

Each call checks what the registry says against what gapseal already knows: a manifest fetched by digest must hash
to it, a blob must have exactly the size it is expected to have and hash to its digest (checked while it streams
to disk), a blob the registry claims to hold must answer HEAD with that size and digest, and every URL the registry
hands back (upload ``Location``) must be on the named registry.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gapseal.bundler import layout as oci
from gapseal.bundler.registry.transport import FileBody, RegistryError, RegistryHTTP, Response
from gapseal.bundler.tarformat import ALIGNED_BUFFER, aligned_buffer
from gapseal.bundler.unpack import OutputFile
from gapseal.progress import NO_PROGRESS, Progress

_T = TypeVar("_T")
MAX_MANIFEST = 4 * 1024 * 1024
"""The largest manifest or index read (distribution's own limit): the cap is enforced while reading."""
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Fetched:
    """A blob written to disk: its size and digest as hashed while it was written."""

    path: Path
    size: int
    sha256: str


def run_parallel(fn: Callable[[_T], object], items: Sequence[_T], concurrency: int) -> None:
    """Run ``fn`` on every item, ``concurrency`` at a time; at the first failure start no more, and raise it."""
    failed = threading.Event()

    def one(item: _T) -> None:
        if failed.is_set():  # a registry that refused one request is not sent the rest
            return
        try:
            fn(item)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items) or 1))) as pool:
        futures = [pool.submit(one, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            f.cancel()
    for f in futures:
        if not f.cancelled() and f.exception() is not None:
            raise f.exception()  # type: ignore[misc]


class Distribution:
    """One registry's distribution API."""

    def __init__(self, http: RegistryHTTP) -> None:
        self.http = http

    @property
    def host(self) -> str:
        """``HOST:PORT`` of the registry."""
        return self.http.origin.hostport

    def fail(self, response: Response, what: str, hint: str | None = None) -> RegistryError:
        """The registry refused ``what``: its status and error message."""
        detail = response.error_text()
        return self.http.error(
            f"{what}: the registry answered {response.status} {response.reason}" + (f" ({detail})" if detail else ""),
            hint=hint,
        )

    def ping(self) -> None:
        """Check the registry speaks the distribution API before any work (GET /v2/)."""
        r = self.http.request("GET", "/v2/", what="checking the registry")
        if r.status not in (200, 401):
            raise self.fail(r, f"{self.host} is not an OCI registry (GET /v2/)")
        r.drain()

    # -- reading --------------------------------------------------------------------------------------------------

    def manifest(
        self, repo: str, ref: str, accept: str, *, digest: str | None = None, cap: int = MAX_MANIFEST
    ) -> tuple[bytes, str]:
        """A manifest's bytes and media type, read up to ``cap``; when ``digest`` is given its bytes must hash to it."""
        sep = "@" if ref.startswith("sha256:") else ":"
        what = f"fetching manifest {repo}{sep}{ref}"
        r = self.http.request("GET", f"/v2/{repo}/manifests/{ref}", what=what, headers={"Accept": accept}, expect=cap)
        if r.status == 404:
            r.drain()
            raise self.http.error(f"{what}: not found on {self.host}", hint="check the name and version")
        if r.status != 200:
            raise self.fail(r, what)
        data = r.read_capped(cap, noun="manifest")
        actual = oci.sha256_digest(data)
        if digest is not None and actual != digest:
            raise self.http.error(
                f"the registry returned a manifest that does not match its digest: {repo}@{digest} hashes to {actual}",
                hint="the registry or something between it and you altered it; nothing was written to --out",
            )
        media = (r.header("Content-Type") or "").split(";")[0].strip()
        return data, media

    def index_or_none(self, path: str, what: str, *, cap: int) -> bytes | None:
        """An image index at ``path`` (referrers API or tag schema), None when absent or not an index."""
        r = self.http.request("GET", path, what=what, headers={"Accept": oci.MEDIA_INDEX}, expect=cap)
        if r.status == 404 or (r.status != 200 and "/referrers/" in path):
            r.drain()
            return None
        if r.status != 200:
            raise self.fail(r, what)
        if not (r.header("Content-Type") or "").startswith(oci.MEDIA_INDEX):
            r.drain()
            return None
        return r.read_capped(cap, noun="referrers index")

    def fetch_blob(
        self, repo: str, digest: str, size: int, dest: Path, *, progress: Progress = NO_PROGRESS, task: int = 0
    ) -> Fetched:
        """Stream blob ``digest`` into the new file ``dest``, never reading past ``size`` bytes; hash as it arrives.

        A wrong size or digest is refused (``dest`` removed); the bytes on disk are exactly the bytes hashed.
        """
        what = f"fetching blob {digest} from {repo}"
        r = self.http.request("GET", f"/v2/{repo}/blobs/{digest}", what=what, expect=size)
        if r.status != 200:
            raise self.fail(r, what)
        declared = r.content_length()
        if declared is not None and declared != size:
            r.close()
            raise self._wrong_blob(repo, digest, f"announced as {declared} bytes, not {size}; nothing of it was read")
        h = hashlib.sha256()
        got = 0
        # A large blob is received into page-aligned memory, so that whole chunks go to the disk with O_DIRECT from
        # the buffer they were hashed in, not copied into the page cache first (measured: a third of a pull's system
        # time); the rest goes through the page cache, its writeback started early. Every file is fsync'd at its end.
        want = min(CHUNK, size + 1)
        # From the size at which OutputFile writes with O_DIRECT, the buffer is the tar reader's kind: page-aligned.
        view = aligned_buffer(want) if size >= ALIGNED_BUFFER else memoryview(bytearray(want))
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            try:
                out = OutputFile(fd)
                with r:
                    while got < size:
                        n = r.read_into(view[: min(len(view), size - got)])
                        if n == 0:
                            raise self.http.error(
                                f"{what}: the registry closed the connection after {got} of {size} bytes",
                                hint="check the registry and the link to it; nothing was written to --out",
                            )
                        h.update(view[:n])
                        out.write(view[:n])
                        got += n
                        progress.advance(task, n)
                    extra = r.read_into(view[:1])
                    if extra:
                        raise self._wrong_blob(repo, digest, f"over {size} bytes")
                    r.finish()
                actual = "sha256:" + h.hexdigest()
                if actual != digest:
                    raise self._wrong_blob(repo, digest, f"it hashes to {actual}")
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return Fetched(dest, got, actual.removeprefix("sha256:"))

    def blob_bytes(self, repo: str, digest: str, size: int) -> bytes:
        """A small blob's bytes, read up to ``size`` and checked against ``digest``."""
        what = f"fetching blob {digest} from {repo}"
        r = self.http.request("GET", f"/v2/{repo}/blobs/{digest}", what=what, expect=size)
        if r.status != 200:
            raise self.fail(r, what)
        data = r.read_capped(size, noun="blob")
        if len(data) != size or oci.sha256_digest(data) != digest:
            raise self._wrong_blob(repo, digest, f"{len(data)} bytes hashing to {oci.sha256_digest(data)}")
        return data

    def _wrong_blob(self, repo: str, digest: str, wrong: str) -> RegistryError:
        return self.http.error(
            f"the registry returned blob {digest} of {repo} with other content: {wrong}",
            hint="the registry or something between it and you altered the blob; nothing was written to --out; "
            "repair the registry (load the bundle again) and pull again",
        )

    # -- writing --------------------------------------------------------------------------------------------------

    def blob_present(self, repo: str, digest: str, size: int) -> bool:
        """True when ``repo`` holds the blob: HEAD answers 200 with its size and (when sent) its digest."""
        what = f"checking blob {digest} in {repo}"
        r = self.http.request("HEAD", f"/v2/{repo}/blobs/{digest}", what=what)
        r.drain()
        if r.status == 404:
            return False
        if r.status != 200:
            raise self.fail(r, what)
        length = r.content_length()
        said = r.header("Docker-Content-Digest")
        if length != size or (said is not None and said != digest):
            raise self.http.error(
                f"{what}: the registry claims to hold it but answers with size {length} and digest {said}, "
                f"not {size} and {digest}",
                hint="the registry's storage is damaged or the registry is lying; repair it before loading",
            )
        return True

    def start_upload(self, repo: str, digest: str, size: int, *, mount_from: str | None) -> str | None:
        """Mount ``digest`` (None when mounted), or open an upload session (its checked URL).

        The mount names ``mount_from`` when a repository of this load holds the blob; without it, a registry that
        finds blobs by itself (OCI 1.1: ``from`` may be left out) mounts it from wherever it has it, and one that
        does not (distribution 2.8) opens an upload session, which is used: the attempt costs no round trip.
        """
        query = {"mount": digest, **({"from": mount_from} if mount_from else {})}
        path = f"/v2/{repo}/blobs/uploads/?{urllib.parse.urlencode(query)}"
        what = (
            f"mounting blob {digest} into {repo}" if mount_from else f"uploading blob {digest} ({size} bytes) to {repo}"
        )
        r = self.http.request("POST", path, what=what)
        if r.status == 201:
            r.drain()
            return None
        if r.status != 202:
            raise self.fail(r, what, hint="check that the registry accepts pushes here; run again to resume")
        location = r.header("Location")
        r.drain()
        if not location:
            raise self.http.error(f"{what}: the registry opened an upload without a Location")
        url = urllib.parse.urljoin(self.http.url(path), location)
        self.http.check_origin(url, what, "upload Location")
        return url

    def upload(self, repo: str, digest: str, size: int, body: FileBody | bytes, *, mount_from: str | None) -> bool:
        """Send (or mount) one blob; True when it was mounted instead of sent. One PUT carries the whole blob."""
        url = self.start_upload(repo, digest, size, mount_from=mount_from)
        if url is None:
            return True
        what = f"uploading blob {digest} ({size} bytes) to {repo}"
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        r = self.http.request(
            "PUT",
            f"{url}{sep}{urllib.parse.urlencode({'digest': digest})}",
            what=what,
            headers={"Content-Type": "application/octet-stream"},
            body=body,
        )
        if r.status not in (201, 204):
            raise self.fail(r, what, hint="run the command again to resume")
        r.drain()
        return False

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> Response:
        """PUT a manifest; the response is drained and returned for its headers (``OCI-Subject``)."""
        what = f"pushing manifest {ref} to {repo}"
        r = self.http.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", what=what, headers={"Content-Type": media_type}, body=data
        )
        if r.status != 201:
            raise self.fail(r, what, hint="check that the registry accepts pushes here; run again to resume")
        said = r.header("Docker-Content-Digest")
        r.drain()
        if said is not None and said != oci.sha256_digest(data):
            raise self.http.error(f"{what}: the registry stored it as {said}, not {oci.sha256_digest(data)}")
        return r
