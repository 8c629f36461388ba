"""A real registry on loopback for tests: Debian's docker-registry (CNCF distribution 2.8), and a fault proxy.

``LoopbackRegistry`` runs ``docker-registry serve cfg.yml`` with its storage under the test's directory, on
127.0.0.1 and a free port, and kills it (by its PID) at teardown. ``FaultProxy`` is a small HTTP proxy on
127.0.0.1 in front of it that records every request and can inject one fault at a time: corrupt one blob's bytes,
refuse blob uploads after the n-th, or answer the OCI referrers API that distribution 2.8 lacks.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.registry.images import tool

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
_BLOB_GET = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_REFERRERS = re.compile(r"^/v2/(?P<repo>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopbackRegistry:
    """docker-registry serving from ``root/storage`` on 127.0.0.1:<free port>.

    ``address``/``port`` put it elsewhere: on the controller side of a namespace host's veth link (an address the
    tests assigned themselves), so that the host can pull from it.
    """

    def __init__(self, root: Path, *, address: str = "127.0.0.1", port: int | None = None) -> None:
        self.address = address
        self.wanted_port = port
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "registry.log"
        # A free port can be taken by someone else before the registry binds it: then try another one.
        for _attempt in range(5):
            if self._start():
                return
        raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")

    def _start(self) -> bool:
        self.port = self.wanted_port or free_port()
        self.host = f"{self.address}:{self.port}"
        self.config = self.root / "config.yml"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'storage'}\n  delete:\n    enabled: true\n"
            f'http:\n  addr: "{self.host}"\n  secret: gapseal-test-only\n'
        )
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - argument list
            [tool("docker-registry"), "serve", str(self.config)], stdout=self._log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            if f"listening on {self.host}" in self.log.read_text(errors="replace"):
                try:
                    with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:  # noqa: S310 - the test's own address
                        if r.status == 200 and self.process.poll() is None:
                            return True
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        """Stop the registry (this process only, by its PID)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log_file.close()


@dataclass
class ProxyState:
    """What the proxy does and what it saw."""

    upstream: str
    corrupt_blob: str | None = None
    """A digest whose bytes are altered on GET: a blob, or a manifest fetched by that digest."""
    refuse_uploads_after: int | None = None
    """Answer 503 to every blob upload start after this many."""
    upload_delay: float = 0.0
    """Seconds to hold every blob upload PUT before forwarding it (a slow link, to interrupt a push mid-way)."""
    referrers_api: bool = False
    """Emulate the OCI 1.1 referrers API (OCI-Subject header, GET /v2/<repo>/referrers/<digest>)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    uploads_in_flight: int = 0
    max_uploads_in_flight: int = 0
    """The most blob-upload PUT/PATCH requests the proxy held at the same time."""
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str, pattern: str) -> int:
        """How many requests had ``method`` and a path matching ``pattern``."""
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))

    def upload_starts(self) -> int:
        """Blob uploads started (POST .../blobs/uploads/), i.e. blobs sent (cross-repo mounts excluded)."""
        with self.lock:
            return sum(1 for m, p in self.requests if m == "POST" and "/blobs/uploads/" in p and "from=" not in p)


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        with state.lock:
            state.requests.append((self.command, path))
            uploads = sum(1 for m, p in state.requests if m == "POST" and "/blobs/uploads/" in p and "from=" not in p)
        bare = path.split("?", 1)[0]
        if (
            self.command == "POST"
            and "/blobs/uploads/" in bare
            and "from=" not in path
            and state.refuse_uploads_after is not None
            and uploads > state.refuse_uploads_after
        ):
            self._reply(503, {"Content-Type": "application/json"}, b'{"errors":[{"code":"UNAVAILABLE"}]}')
            return
        m = _REFERRERS.match(bare)
        if m and state.referrers_api and self.command == "GET":
            wanted = re.search(r"artifactType=([^&]+)", path)
            with state.lock:
                found = list(state.referrers.get(m["digest"], []))
            if wanted:
                found = [d for d in found if d.get("artifactType") == urllib.parse.unquote(wanted.group(1))]
            doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": found}
            self._reply(200, {"Content-Type": "application/vnd.oci.image.index.v1+json"}, json.dumps(doc).encode())
            return
        uploading = self.command in ("PUT", "PATCH") and "/blobs/uploads/" in bare
        if uploading:
            with state.lock:
                state.uploads_in_flight += 1
                state.max_uploads_in_flight = max(state.max_uploads_in_flight, state.uploads_in_flight)
        try:
            if uploading and state.upload_delay:
                time.sleep(state.upload_delay)
            self._forward(state, path, bare, body)
        finally:
            if uploading:
                with state.lock:
                    state.uploads_in_flight -= 1

    def _forward(self, state: ProxyState, path: str, bare: str, body: bytes) -> None:
        headers: dict[str, str] = {}
        for k, v in self.headers.items():  # repeated headers (skopeo sends several Accept lines) are joined
            if k.lower() not in _HOP_HEADERS:
                headers[k] = f"{headers[k]}, {v}" if k in headers else v
        conn = http.client.HTTPConnection(state.upstream, timeout=60)
        try:
            conn.request(
                self.command,
                path,
                body=body if body or self.command in ("PUT", "POST", "PATCH") else None,
                headers={**headers, "Content-Length": str(len(body))} if self.command != "GET" else headers,
            )
            resp = conn.getresponse()
            data = resp.read()
            out_headers = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS}
            status = resp.status
            upstream_length = resp.getheader("Content-Length")
        finally:
            conn.close()
        blob = _BLOB_GET.match(bare)
        if blob and self.command == "GET" and blob["digest"] == state.corrupt_blob and data:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        manifest = _MANIFEST.match(bare)
        if manifest and self.command == "GET" and manifest["ref"] == state.corrupt_blob and data:
            data = data.replace(b'"schemaVersion":2', b'"schemaVersion": 2', 1)
        if manifest and self.command == "PUT" and status == 201 and state.referrers_api:
            doc = json.loads(body)
            subject = doc.get("subject")
            if isinstance(subject, dict):
                descriptor = {
                    "mediaType": self.headers.get("Content-Type"),
                    "digest": out_headers.get("Docker-Content-Digest"),
                    "size": len(body),
                    "artifactType": doc.get("artifactType") or doc.get("config", {}).get("mediaType"),
                }
                if doc.get("annotations"):
                    descriptor["annotations"] = doc["annotations"]
                with state.lock:
                    state.referrers.setdefault(subject["digest"], []).append(descriptor)
                out_headers["OCI-Subject"] = subject["digest"]
        if self.command == "HEAD":
            self._reply(status, {**out_headers, "Content-Length": upstream_length or "0"}, b"", head=True)
        else:
            self._reply(status, out_headers, data)

    def _reply(self, status: int, headers: dict[str, str], body: bytes, *, head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if not head and "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 - stdlib naming


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ProxyState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` (HOST:PORT); see ``ProxyState`` for its faults."""

    def __init__(self, upstream: str) -> None:
        self.state = ProxyState(upstream=upstream)
        self._server = _ProxyServer(self.state)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
