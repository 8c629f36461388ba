"""A hostile registry for tests: a small HTTP server in front of the real docker-registry that rewrites answers.

``HostileRegistry`` forwards every request to the real registry (``upstream``) unless a rule set by the test
answers it: a rule sees the request and may answer by itself, or forward it and alter what comes back. Answers can
be ordinary, streamed without a length, dripped a byte at a time, stalled, cut short, or raw bytes that are not HTTP.
``Listener`` is the "other host": a loopback socket that only counts the connections it accepts; class-1 tests
assert it saw none. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


@dataclass
class Req:
    """A request as the hostile registry received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """An answer, honest or not."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    length: int | None = None
    """The Content-Length to announce; None: the body's length (unless ``stream`` is set)."""
    stream: Callable[[], Iterator[bytes]] | None = None
    """Chunks sent with chunked transfer encoding (no length): the body can be endless."""
    drip: float = 0.0
    """Seconds to wait before each byte of the body."""
    header_drip: float = 0.0
    """Seconds to wait before each byte of the status line and headers."""
    hang: float = 0.0
    """Seconds to wait before sending anything at all."""
    stall_body: float = 0.0
    """Seconds to wait between the headers and the body."""
    cut_after: int | None = None
    """Send only this many body bytes, then close the connection."""
    raw: bytes | None = None
    """Bytes written instead of an HTTP response, then the connection closes."""


Forward = Callable[[Req], Reply]
Rule = Callable[[Req, Forward], "Reply | None"]


@dataclass
class _RuleEntry:
    method: str | None
    pattern: re.Pattern[str]
    fn: Rule
    times: int | None
    used: int = 0


class _State:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[_RuleEntry] = []
        self.seen: list[Req] = []
        self.lock = threading.Lock()
        self.sent_body_bytes = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Req(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with state.lock:
            state.seen.append(req)
            rules = list(state.rules)
        for rule in rules:
            if rule.method not in (None, req.method) or not rule.pattern.search(req.path):
                continue
            with state.lock:
                if rule.times is not None and rule.used >= rule.times:
                    continue
                rule.used += 1
            reply = rule.fn(req, self._forward)
            if reply is not None:
                self._send(reply)
                return
        self._send(self._forward(req))

    def _forward(self, req: Req) -> Reply:
        state = self.server.state
        headers: dict[str, str] = {}
        for k, v in self.headers.items():  # the Host header is kept: the registry builds Locations from it
            if k.lower() not in _HOP_HEADERS:
                headers[k] = f"{headers[k]}, {v}" if k in headers else v
        conn = http.client.HTTPConnection(state.upstream, timeout=60)
        try:
            if req.method != "GET" and req.method != "HEAD":
                headers["Content-Length"] = str(len(req.body))
            conn.request(req.method, req.path, body=req.body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS}
            upstream_length = resp.getheader("Content-Length")
        finally:
            conn.close()
        reply = Reply(resp.status, out, data)
        if req.method == "HEAD":
            reply.length = int(upstream_length or 0)
        return reply

    def _write(self, data: bytes, drip: float) -> None:
        if not drip:
            self.wfile.write(data)
            return
        for i in range(len(data)):
            time.sleep(drip)
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()

    def _send(self, reply: Reply) -> None:
        state = self.server.state
        self.close_connection = reply.raw is not None or reply.cut_after is not None
        if reply.hang:
            time.sleep(reply.hang)
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            return
        head = [f"HTTP/1.1 {reply.status} {http.client.responses.get(reply.status, 'Unknown')}"]
        headers = dict(reply.headers)
        if reply.stream is not None:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(reply.length if reply.length is not None else len(reply.body))
        head += [f"{k}: {v}" for k, v in headers.items()]
        try:
            self._write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"), reply.header_drip)
            if self.command == "HEAD":
                return
            if reply.stall_body:
                self.wfile.flush()
                time.sleep(reply.stall_body)
            if reply.stream is not None:
                for chunk in reply.stream():
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    with state.lock:
                        state.sent_body_bytes += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
                return
            body = reply.body if reply.cut_after is None else reply.body[: reply.cut_after]
            self._write(body, reply.drip)
            with state.lock:
                state.sent_body_bytes += len(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 - stdlib naming


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class HostileRegistry:
    """An HTTP server on 127.0.0.1 in front of the registry ``upstream`` (HOST:PORT), answering as rules say."""

    def __init__(self, upstream: str) -> None:
        self._state = _State(upstream)
        self._server = _Server(self._state)
        self.port = int(self._server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def upstream(self) -> str:
        """HOST:PORT of the real registry behind it."""
        return self._state.upstream

    def on(self, method: str | None, pattern: str, fn: Rule, *, times: int | None = None) -> None:
        """Answer requests of ``method`` (None: any) whose path matches ``pattern`` with ``fn`` (``times`` at most)."""
        with self._state.lock:
            self._state.rules.append(_RuleEntry(method, re.compile(pattern), fn, times))

    def seen(self, method: str | None = None, pattern: str = "") -> list[Req]:
        """The requests received so far, filtered."""
        with self._state.lock:
            return [r for r in self._state.seen if method in (None, r.method) and re.search(pattern, r.path)]

    @property
    def sent_body_bytes(self) -> int:
        """Body bytes written to clients so far (what a capped read cost the registry to send, at most)."""
        with self._state.lock:
            return self._state.sent_body_bytes

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


class Listener:
    """The other host: a socket on 127.0.0.1 that accepts and counts connections, and answers nothing."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self.host = f"127.0.0.1:{self.port}"
        self.connections = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def stop(self) -> None:
        """Stop listening."""
        self._stopped = True
        self._sock.close()
