"""Headless Chromium for the report tests, always inside an empty network namespace (``unshare --net``).

``run_chromium`` runs one command-line job (``--dump-dom``, ``--screenshot``) and returns the URL requests the net log
saw. ``DevTools`` drives Chromium over ``--remote-debugging-pipe`` (the DevTools protocol on file descriptors 3 and
4, no socket at all) to measure the laid-out page: the report's CSP forbids scripts, but DevTools' Runtime.evaluate
runs outside the page's policy, and the page itself stays untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
UNSHARE = shutil.which("unshare")
BASH = shutil.which("bash") or "/bin/bash"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or UNSHARE is None,
    reason="Debian chromium and util-linux unshare are needed (scripts/system-deps.sh)",
)


def run_chromium(
    tmp: Path, url: str, *extra: str, size: tuple[int, int] = (1200, 1600)
) -> tuple[str, list[dict[str, Any]]]:
    """Run headless Chromium on ``url`` in an empty network namespace; return stdout and the URL requests it logged."""
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    netlog = profile.with_suffix(".netlog.json")
    assert UNSHARE is not None
    assert CHROMIUM is not None
    argv = [
        UNSHARE,
        "--net",
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--log-net-log={netlog}",
        "--net-log-capture-mode=Everything",
        f"--window-size={size[0]},{size[1]}",
        *extra,
        url,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requests = [
        e["params"]
        for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in e.get("params", {})
    ]
    return proc.stdout, requests


def page_requests(requests: list[dict[str, Any]]) -> list[str]:
    """Requests a document initiated (the browser's own background fetches have no origin)."""
    return [r["url"] for r in requests if r.get("initiator") != "not an origin"]


class DevTools:
    """One Chromium in an empty network namespace, driven over the DevTools pipe; use as a context manager."""

    def __init__(self, tmp: Path) -> None:
        assert UNSHARE is not None
        assert CHROMIUM is not None
        self._to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, self._from_child_w = os.pipe()
        # The child's ends move above 9 so "3<&N 4>&M" never clobbers one with the other; bash, as dash reads one digit.
        for name in ("_to_child_r", "_from_child_w"):
            low = getattr(self, name)
            setattr(self, name, fcntl.fcntl(low, fcntl.F_DUPFD, 10))
            os.close(low)
        chromium = shlex.join(
            [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'devtools-profile'}", "--remote-debugging-pipe"]
        )
        # fd 3: commands in, fd 4: answers out (what --remote-debugging-pipe expects)
        script = f"exec {chromium} about:blank 3<&{self._to_child_r} 4>&{self._from_child_w}"
        self._proc = subprocess.Popen(
            [UNSHARE, "--net", BASH, "-c", script],
            pass_fds=(self._to_child_r, self._from_child_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(self._to_child_r)
        os.close(self._from_child_w)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None

    def __enter__(self) -> DevTools:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.call("Browser.close", session=False)
        self._proc.wait(timeout=30)
        os.close(self._to_child_w)
        os.close(self._from_child_r)

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_child_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send one command and return its result (events seen meanwhile are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session is not None:
            message["sessionId"] = self._session
        os.write(self._to_child_w, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read_message()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def open(self, url: str, *, width: int, height: int = 1200, media: str = "screen") -> None:
        """Lay ``url`` out at ``width`` CSS pixels for ``media`` (``screen`` or ``print``) and wait for its load."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.call("Emulation.setEmulatedMedia", {"media": media})
        self._next_id += 1
        nav = {"id": self._next_id, "method": "Page.navigate", "params": {"url": url}, "sessionId": self._session}
        os.write(self._to_child_w, json.dumps(nav).encode() + b"\0")
        loaded = answered = False
        while not (loaded and answered):
            m = self._read_message()
            answered = answered or m.get("id") == self._next_id
            loaded = loaded or m.get("method") == "Page.loadEventFired"

    def evaluate(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page (DevTools is not bound by the page's CSP) and return its value."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"]))
        return result["result"].get("value")


HEADER_CHECK = """(() => {
  const broken = [], overflowing = [];
  const headers = Array.from(document.querySelectorAll('th'));
  for (const th of headers) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const words = /\\S+/g;
      for (let m = words.exec(node.data); m; m = words.exec(node.data)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(m[0]);
      }
    }
    if (th.scrollWidth > th.clientWidth + 1) overflowing.push(th.textContent.trim());
  }
  return {headers: headers.length, broken, overflowing};
})()"""
"""For every table header: the words laid out on more than one line (broken mid-word) and the headers wider than
their cell."""


BADGE_CHECK = """(() => Array.from(document.querySelectorAll('td .st')).filter(b => {
  const cell = b.closest('td').getBoundingClientRect(), r = b.getBoundingClientRect();
  return r.right > cell.right + 0.5 || r.left < cell.left - 0.5;
}).map(b => b.textContent))()"""
"""Status badges (``.st``) that stick out of their table cell."""
