"""HTTP to one registry, and only to it: the one-host rule, size caps enforced while reading, and deadlines.

Everything gapseal sends to a registry goes through ``RegistryHTTP``. It is small on purpose, so what it guarantees
can be read in one sitting:

- **One host.** Requests go to the origin (scheme, host, port) the user named. A redirect, an upload ``Location`` or a
  token realm that points at another origin is refused with an error naming both, unless the user allowed that
  origin (``--allow-host``). Relative and same-origin locations are followed. Credentials (``Authorization``) are
  only ever sent to the named origin, never to an allowed other one.
- **Bounded reads.** A body is read only up to the cap its caller gives (a manifest's, or a blob's known size); a
  ``Content-Length`` above it is refused before one body byte is read, and a body without one is cut at the cap.
- **Deadlines.** Every socket read and connect has a timeout (a stalled transfer fails after it), and every request
  has an overall deadline of that timeout plus its declared size at ``MIN_RATE``; a watchdog closes the socket when
  it passes, so a peer dripping a byte a second (headers included) fails in bounded time.
- **Retries** are bounded and only for idempotent requests (GET, HEAD): a connection reset or a 502/503/504.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from gapseal.bundler.registry.deadline import DEFAULT_TIMEOUT, WATCHDOG, Guard, Limits
from gapseal.bundler.registry.origin import Origin, origin_of, parse_hostport
from gapseal.errors import BundleError

MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 * 1024
"""Error bodies and token responses are read up to this many bytes."""
USERNAME_ENV = "GAPSEAL_REGISTRY_USERNAME"
PASSWORD_ENV = "GAPSEAL_REGISTRY_PASSWORD"  # noqa: S105 - the variable's name, not a password
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUS = frozenset({502, 503, 504})
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(BundleError):
    """A registry that cannot be reached, refuses a request, points elsewhere, or serves content that does not match."""


@dataclass(frozen=True)
class FileBody:
    """A request body read from ``length`` bytes of a file (sent with ``sendfile``, never loaded into memory)."""

    path: Path
    length: int


class Response:
    """A response whose body is read only through capped reads; its deadline runs until it is finished or closed."""

    def __init__(
        self,
        client: RegistryHTTP,
        raw: http.client.HTTPResponse,
        conn: http.client.HTTPConnection,
        origin: Origin,
        what: str,
        guard: Guard,
        method: str,
    ) -> None:
        self._client = client
        self.method = method
        self.raw = raw
        self._conn: http.client.HTTPConnection | None = conn
        self._origin = origin
        self.what = what
        self.status = raw.status
        self.reason = raw.reason
        self.headers = raw.headers
        self._guard = guard

    def header(self, name: str) -> str | None:
        """One header's value, or None."""
        value = self.headers.get(name)
        return None if value is None else str(value)

    def content_length(self) -> int | None:
        """The declared body size, or None; a malformed one is refused."""
        raw = self.header("Content-Length")
        if raw is None:
            return None
        if not raw.strip().isdigit():
            self.close()
            raise self._client.error(f"{self.what}: the registry sent a malformed Content-Length {raw[:40]!r}")
        return int(raw)

    def read_capped(self, cap: int, *, noun: str = "body") -> bytes:
        """The whole body, refused when it is (or declares to be) larger than ``cap`` bytes."""
        declared = 0 if self.method == "HEAD" else self.content_length()  # a HEAD's length is not of a body
        if declared is not None and declared > cap:
            self.close()
            raise self._client.error(
                f"{self.what}: the registry announces a {noun} of {declared} bytes, more than the {cap} allowed; "
                "nothing of it was read",
                hint="the registry is misconfigured or hostile",
            )
        data = bytearray()  # grows with what arrives: a small answer costs what it is, never the cap
        chunk = memoryview(bytearray(min(64 * 1024, cap + 1)))
        while len(data) <= cap:
            n = self.read_into(chunk[: min(len(chunk), cap + 1 - len(data))])
            if n == 0:
                break
            data += chunk[:n]
        if len(data) > cap:
            self.close()
            raise self._client.error(
                f"{self.what}: the registry sent a {noun} of more than {cap} bytes; stopped reading there",
                hint="the registry is misconfigured or hostile",
            )
        self.finish()
        return bytes(data)

    def read_into(self, buffer: memoryview) -> int:
        """Read body bytes into ``buffer`` (filling it unless the body ends first); 0 at the end."""
        try:
            n = self.raw.readinto(buffer)
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.close()
            raise self._client.transfer_error(self.what, e, self._guard) from e
        if self._guard.fired or time.monotonic() > self._guard.deadline:
            self.close()
            raise self._client.deadline_error(self.what)
        return n

    def finish(self) -> None:
        """Done with the body: the connection is kept for reuse when the body was read to its end, else closed."""
        conn, self._conn = self._conn, None
        WATCHDOG.release(self._guard)
        if conn is None:
            return
        if self.raw.will_close or not self.raw.isclosed() or self._guard.fired:
            conn.close()  # the body was not read to its end, or the peer closes: never reuse the connection
        else:
            self._client.give_back(self._origin, conn)

    def drain(self) -> None:
        """Read and drop a small body (an error's or a redirect's), so the connection can be reused."""
        try:
            self.read_capped(MAX_ERROR_BODY)
        except RegistryError:
            self.close()

    def error_text(self) -> str:
        """The registry's error codes and messages (OCI error JSON), or the start of the body."""
        try:
            data = self.read_capped(MAX_ERROR_BODY)
        except RegistryError:
            return ""
        try:
            errors = json.loads(data).get("errors", [])
            parts = [
                ": ".join(str(e[k]) for k in ("code", "message") if e.get(k)) for e in errors if isinstance(e, dict)
            ]
            return "; ".join(parts)[:300]
        except (ValueError, AttributeError):
            return data[:200].decode("utf-8", "replace").strip()

    def close(self) -> None:
        """Drop the connection without reading the rest of the body."""
        conn, self._conn = self._conn, None
        WATCHDOG.release(self._guard)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RegistryHTTP:
    """Requests to one registry origin (see the module docstring); thread-safe, one kept connection per thread."""

    def __init__(
        self,
        origin: Origin,
        *,
        allowed: frozenset[Origin] = frozenset(),
        limits: Limits | None = None,
        tls_verify: bool = True,
    ) -> None:
        self.origin = origin
        self.allowed = allowed
        self.limits = limits or Limits()
        self._tls_verify = tls_verify
        self._tls: ssl.SSLContext | None = None  # made on the first https connection (_tls_context)
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        user, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
        self._basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user and password else None
        self._use_basic = False

    # -- errors ---------------------------------------------------------------------------------------------------

    def error(self, message: str, *, hint: str | None = None) -> RegistryError:
        """A ``RegistryError`` placed at this registry."""
        return RegistryError(message, where=str(self.origin), hint=hint)

    def deadline_error(self, what: str) -> RegistryError:
        """The request's overall deadline passed."""
        return self.error(
            f"{what}: the registry at {self.origin.hostport} is too slow: the request's deadline "
            f"({self.limits.timeout:g} s plus 1 s per {self.limits.min_rate:.0f} bytes) passed; gave up",
            hint="check the registry and the link to it; --timeout gives it longer",
        )

    def transfer_error(self, what: str, e: BaseException, guard: Guard) -> RegistryError:
        """A connection problem, named plainly."""
        if guard.fired:
            return self.deadline_error(what)
        if isinstance(e, TimeoutError):
            return self.error(
                f"{what}: the registry at {self.origin.hostport} stalled: nothing for {self.limits.timeout:g} s",
                hint="check the registry and the link to it; --timeout waits longer; a load resumes when run again",
            )
        if isinstance(e, ssl.SSLError):
            return self.error(
                f"{what}: TLS failed with {self.origin.hostport}: {e.reason or e}",
                hint="for a registry serving plain HTTP or a self-signed certificate, pass --insecure",
            )
        if isinstance(e, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(e, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
            reason = "the registry closed the connection"
        elif isinstance(e, http.client.BadStatusLine | http.client.LineTooLong):
            reason = "the answer is not HTTP"
        elif isinstance(e, http.client.IncompleteRead):
            reason = f"the registry closed the connection after {len(e.partial)} bytes of the body"
        else:
            reason = (str(e) or type(e).__name__)[:200]
        return self.error(
            f"{what}: cannot reach the registry at {self.origin.hostport}: {reason}",
            hint="check --registry (HOST:PORT) and that the registry is running; a load resumes when run again",
        )

    def check_origin(self, url: str, what: str, kind: str) -> Origin:
        """The origin of ``url`` when it is the named one or an allowed one; else refuse, naming both hosts."""
        target = origin_of(url)
        if target is None:
            raise self.error(
                f"{what}: the registry at {self.origin} sent a {kind} that is no http(s) URL: {url[:100]!r}; refused"
            )
        if target != self.origin and target not in self.allowed:
            raise self.error(
                f"{what}: the registry at {self.origin} sent a {kind} pointing at another host, {target}; refused "
                "(gapseal contacts only the registry you named)",
                hint=f"if {target.hostport} is part of your registry (its storage or token service), "
                f"allow it with --allow-host {target.hostport}",
            )
        return target

    # -- connections ----------------------------------------------------------------------------------------------

    def _connection(self, origin: Origin) -> tuple[http.client.HTTPConnection, bool]:
        pool: dict[Origin, http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        conn = pool.pop(origin, None)
        if conn is not None:
            return conn, True
        host = origin.host.strip("[]")
        conn = (
            http.client.HTTPSConnection(host, origin.port, timeout=self.limits.timeout, context=self._tls_context())
            if origin.scheme == "https"
            else http.client.HTTPConnection(host, origin.port, timeout=self.limits.timeout)
        )
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS context of every https connection, made once (reading the system's CAs takes tens of ms)."""
        with self._lock:
            if self._tls is None:
                context = ssl.create_default_context()
                if not self._tls_verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._tls = context
            return self._tls

    def give_back(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        """Keep a connection whose response was read to its end for this thread's next request to ``origin``."""
        pool: dict[Origin, http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        old = pool.pop(origin, None)
        if old is not None and old is not conn:
            old.close()
        pool[origin] = conn

    def close(self) -> None:
        """Close every connection this client opened."""
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            c.close()

    # -- requests -------------------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (``/v2/...``) on the named registry."""
        return f"{self.origin}{path}"

    def request(
        self,
        method: str,
        target: str,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        body: bytes | FileBody | None = None,
        expect: int = MAX_ERROR_BODY,
        follow: bool = True,
        answer_challenges: bool = True,
    ) -> Response:
        """Send one request (``target``: a ``/v2/...`` path or an absolute URL); see the module docstring.

        ``expect`` is the most body the caller will read: it scales the request's deadline. Redirects of GET and
        HEAD are followed within the origins allowed; a 401 challenge is answered once.
        """
        url = target if "://" in target else self.url(target)
        for _hop in range(MAX_REDIRECTS + 1):
            origin = self.check_origin(url, what, "URL")
            response = self._authorized(
                method, url, origin, what=what, headers=headers, body=body, expect=expect, answer=answer_challenges
            )
            if response.status not in _REDIRECTS or not follow:
                return response
            location = response.header("Location")
            response.drain()
            if method not in _IDEMPOTENT or not location:
                raise self.error(f"{what}: the registry answered {response.status} to a {method}; refused")
            url = urllib.parse.urljoin(url, location)
            self.check_origin(url, what, f"redirect ({response.status})")
        raise self.error(f"{what}: more than {MAX_REDIRECTS} redirects; refused")

    def _authorized(
        self,
        method: str,
        url: str,
        origin: Origin,
        *,
        what: str,
        headers: dict[str, str] | None,
        body: bytes | FileBody | None,
        expect: int,
        answer: bool,
    ) -> Response:
        scope = _scope_of(url)
        for round_ in range(2):
            h = dict(headers or {})
            if origin == self.origin:  # credentials go to the named registry only, never to an allowed other host
                token = self._tokens.get(scope) or self._tokens.get("")
                if token is not None:
                    h["Authorization"] = f"Bearer {token}"
                elif self._use_basic and self._basic:
                    h["Authorization"] = self._basic
            response = self._send(method, url, origin, what=what, headers=h, body=body, expect=expect)
            if response.status != 401 or round_ or not answer or origin != self.origin:
                return response
            challenge = response.header("WWW-Authenticate") or ""
            response.drain()
            self._answer(challenge, scope, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, challenge: str, scope: str, what: str) -> None:
        """Get what a 401 challenge asks for: Basic credentials, or a Bearer token from an allowed realm."""
        kind = challenge.split(" ", 1)[0].lower()
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        if kind == "basic":
            if self._basic is None:
                raise self.error(
                    f"{what}: the registry asks for credentials",
                    hint=f"set {USERNAME_ENV} and {PASSWORD_ENV} in the environment (never on the command line)",
                )
            self._use_basic = True
            return
        if kind != "bearer" or "realm" not in params:
            raise self.error(
                f"{what}: the registry asks for an authentication gapseal cannot answer: {challenge[:80]!r}"
            )
        realm = params["realm"]
        realm_origin = self.check_origin(realm, what, "token realm")
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        url = realm + ("&" if "?" in realm else "?") + query
        headers = {"Authorization": self._basic} if self._basic and realm_origin == self.origin else {}
        response = self.request(
            "GET", url, what=f"{what} (token)", headers=headers, follow=False, answer_challenges=False
        )
        if response.status != 200:
            response.drain()
            raise self.error(f"{what}: the token service answered {response.status} {response.reason}")
        try:
            doc = json.loads(response.read_capped(MAX_ERROR_BODY, noun="token"))
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise self.error(f"{what}: the token service sent no usable token")
        self._tokens[scope] = token

    def _send(
        self,
        method: str,
        url: str,
        origin: Origin,
        *,
        what: str,
        headers: dict[str, str],
        body: bytes | FileBody | None,
        expect: int,
    ) -> Response:
        parts = urllib.parse.urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        size = len(body) if isinstance(body, bytes) else body.length if body is not None else 0
        budget = self.limits.deadline(size + expect)
        # Retries only for idempotent requests, a bounded number of times, never after the deadline passed.
        attempts = 1 + (self.limits.retries if method in _IDEMPOTENT else 0)
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            conn, reused = self._connection(origin)
            guard = WATCHDOG.watch(budget)
            try:
                if conn.sock is None:
                    conn.connect()
                guard.sock = conn.sock
                if guard.fired:  # the deadline passed while connecting
                    raise TimeoutError("deadline")
                conn.sock.settimeout(self.limits.timeout)
                raw = _exchange(conn, method, path, headers, body, size)
            except (OSError, http.client.HTTPException) as e:
                WATCHDOG.release(guard)
                conn.close()
                # A refused connection is not retried: nothing listens there, and waiting changes nothing.
                retry = isinstance(e, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected)
                retry = retry and not guard.fired
                if last or not retry:
                    raise self.transfer_error(what, e, guard) from e
                time.sleep(0 if reused else 0.2 * 2**attempt)  # a kept connection the peer closed: at once
                continue
            response = Response(self, raw, conn, origin, what, guard, method)
            if response.status in _RETRY_STATUS and not last:
                response.drain()
                time.sleep(0.2 * 2**attempt)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _exchange(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | FileBody | None,
    size: int,
) -> http.client.HTTPResponse:
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    if body is not None or method in ("PUT", "POST", "PATCH"):
        conn.putheader("Content-Length", str(size))
    conn.endheaders()
    if isinstance(body, bytes) and body:
        conn.send(body)
    elif isinstance(body, FileBody) and body.length:
        sock = conn.sock
        assert sock is not None  # noqa: S101 - endheaders connected it
        with body.path.open("rb") as f:
            sent = sock.sendfile(f, 0, body.length)  # zero-copy on plain sockets; the file is never loaded
        if sent != body.length:
            raise ConnectionError(f"sent {sent} of {body.length} bytes: the file shrank while it was sent")
    return conn.getresponse()


def _scope_of(url: str) -> str:
    """The repository a ``/v2/<repo>/...`` URL concerns (tokens are kept per repository)."""
    m = re.match(r"^/v2/(.+?)/(?:blobs|manifests|tags|referrers)/", urllib.parse.urlsplit(url).path)
    return m.group(1) if m else ""


__all__ = [
    "DEFAULT_TIMEOUT",
    "FileBody",
    "Limits",
    "Origin",
    "RegistryError",
    "RegistryHTTP",
    "Response",
    "origin_of",
    "parse_hostport",
]
