"""A loopback HTTP server implementing the parts of OPA's REST API that ``opa-python-client`` uses.

Policy API: ``GET /v1/policies``, ``PUT /v1/policies/<id>`` (compiles every module, ``400`` with OPA's error shape on
failure), ``DELETE /v1/policies/<id>``. Data API: ``PUT /v1/data/<path>`` (``204``), ``GET /v1/data/<path>``,
``POST /v1/data/<path>`` with ``{"input": ...}`` (``{"result": ...}``, or ``{}`` when undefined),
``DELETE /v1/data/<path>``. Evaluation is OPA's Go code (opa-golib-python-bindings); it binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

_LOCATION_RE = re.compile(r"(?P<file>[^\s:]+\.rego):(?P<row>\d+): (?P<code>rego_\w+): (?P<message>.*)")


class OpaRestState:
    """Policies and data as an OPA server holds them; the compiled engine is rebuilt after every change."""

    def __init__(self) -> None:
        self.policies: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self._engine: OpaEngine | None = None
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []

    def compile(self, policies: dict[str, str]) -> OpaEngine:
        engine = OpaEngine()
        try:
            for policy_id, source in sorted(policies.items()):
                engine.add_policy(policy_id, source)
            engine.add_data(self.data)
            engine.eval_query("true")
        except OpaError:
            engine.close()
            raise
        return engine

    def engine(self) -> OpaEngine:
        if self._engine is None:
            self._engine = self.compile(self.policies)
        return self._engine

    def invalidate(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine = None


def _errors(e: OpaError) -> dict[str, Any]:
    errors = []
    for line in e.message.splitlines():
        m = _LOCATION_RE.search(line)
        if m:
            errors.append(
                {
                    "code": m["code"],
                    "message": m["message"],
                    "location": {"file": m["file"], "row": int(m["row"]), "col": 1},
                }
            )
    return {"code": "invalid_parameter", "message": "error(s) occurred while compiling module(s)", "errors": errors}


class _Handler(BaseHTTPRequestHandler):
    server: OpaRestServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        return

    def _send(self, status: int, body: dict[str, Any] | None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self) -> tuple[str, str]:
        path = unquote(urlsplit(self.path).path)
        for prefix, kind in (("/v1/policies", "policies"), ("/v1/data", "data")):
            if path == prefix or path.startswith(prefix + "/"):
                return kind, path[len(prefix) :].strip("/")
        return "", path

    def _handle(self, method: str) -> None:
        state = self.server.state
        kind, rest = self._route()
        with state.lock:
            state.requests.append((method, self.path))
            if kind == "policies":
                self._policies(method, rest)
            elif kind == "data":
                self._data(method, rest)
            else:
                self._send(404, {"code": "resource_not_found", "message": f"no route {self.path}"})

    def _policies(self, method: str, policy_id: str) -> None:
        state = self.server.state
        if method == "GET" and not policy_id:
            self._send(200, {"result": [{"id": k, "raw": v} for k, v in sorted(state.policies.items())]})
        elif method == "PUT" and policy_id:
            candidate = {**state.policies, policy_id: self._body().decode("utf-8")}
            try:
                engine = state.compile(candidate)
            except OpaError as e:
                self._send(400, _errors(e))
                return
            state.invalidate()
            state.policies = candidate
            state._engine = engine
            self._send(200, {})
        elif method == "DELETE" and policy_id in state.policies:
            del state.policies[policy_id]
            state.invalidate()
            self._send(200, {})
        else:
            self._send(
                404, {"code": "resource_not_found", "message": f"storage_not_found_error: policy id {policy_id!r}"}
            )

    def _data(self, method: str, path: str) -> None:
        state = self.server.state
        keys = [k for k in path.split("/") if k]
        if method == "PUT":
            value = json.loads(self._body() or b"null")
            if not keys:
                state.data = value
            else:
                node = state.data
                for k in keys[:-1]:
                    node = node.setdefault(k, {})
                node[keys[-1]] = value
            state.invalidate()
            self._send(204, None)
        elif method == "DELETE":
            node = state.data
            for k in keys[:-1]:
                node = node.get(k, {})
            node.pop(keys[-1], None)
            state.invalidate()
            self._send(204, None)
        elif method in ("GET", "POST"):
            document = json.loads(self._body() or b"{}") if method == "POST" else {}
            try:
                value = state.engine().eval_document(".".join(keys), document.get("input"))
            except OpaUndefinedError:
                self._send(200, {})
                return
            except OpaError as e:
                self._send(500, {"code": "internal_error", "message": e.message})
                return
            self._send(200, {"result": value})
        else:
            self._send(405, {"code": "method_not_allowed", "message": method})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class OpaRestServer(ThreadingHTTPServer):
    """The server; use as a context manager: ``with OpaRestServer() as srv: srv.url``."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the test OPA server binds loopback only")
        super().__init__((host, port), _Handler)
        self.state = OpaRestState()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def __enter__(self) -> OpaRestServer:
        self._thread = threading.Thread(target=self.serve_forever, name="opa-rest", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.state.invalidate()
