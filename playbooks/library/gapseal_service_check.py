#!/usr/bin/python
"""Ansible module: wait for a started gapseal service to be healthy, send one real request, report why not.

Runs on the host. It watches the unit through ``systemctl show`` while it polls the health check, so a build that
crashes (killed by a signal such as SIGILL, or exiting non-zero and restarted by ``Restart=on-failure``) is reported
at once with its exit status, instead of after the whole timeout. It never fails the task itself: the role decides
(fallback to the next variant, restore the previous version, or fail the host) from ``healthy``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gapseal_service_check
short_description: Health-check a gapseal service unit, send one request, report exit status and journal on failure
options:
  unit: {description: The unit name (gapseal-NAME.service)., type: str, required: true}
  url: {description: HTTP URL that answers 2xx when ready (the spec's health.http)., type: str, default: ""}
  command: {description: Or a command that exits 0 when ready., type: list, elements: str, default: []}
  timeout: {description: Seconds to wait for readiness., type: int, default: 180}
  request_url: {description: URL for one real POST once ready (empty = none)., type: str, default: ""}
  request_body: {description: Its JSON body., type: dict, default: {}}
  journal_lines: {description: Journal lines to return on failure., type: int, default: 20}
"""

RETURN = r"""
healthy: {description: Ready and the request answered 2xx., type: bool}
reason: {description: Why not (empty when healthy)., type: str}
exit: {description: "The unit's main process: {active, result, code, status, restarts}.", type: dict}
journal: {description: Last journal lines of the unit (on failure)., type: list}
exposure: {description: "systemd-analyze security: {score, level} (null when not available).", type: dict}
ready_seconds: {description: Seconds from the check's start to readiness., type: float}
request: {description: "{status, seconds, excerpt} of the real request.", type: dict}
"""

_EXPOSURE = re.compile(r"Overall exposure level for \S+:\s*([0-9.]+)\s+(\S+)")
# systemd's ExecMainCode: CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3
_CODES = {"1": "exited", "2": "killed", "3": "dumped"}
_SIGNALS = {
    "4": "SIGILL",
    "6": "SIGABRT",
    "7": "SIGBUS",
    "8": "SIGFPE",
    "9": "SIGKILL",
    "11": "SIGSEGV",
    "15": "SIGTERM",
}


def _show(unit: str) -> dict[str, str]:
    props = "ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,NRestarts,MainPID"
    proc = subprocess.run(["systemctl", "show", "-p", props, unit], capture_output=True, text=True, check=False)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def _exit(show: dict[str, str]) -> dict[str, object]:
    code = _CODES.get(show.get("ExecMainCode", ""), show.get("ExecMainCode", ""))
    status = show.get("ExecMainStatus", "")
    return {
        "active": show.get("ActiveState", ""),
        "result": show.get("Result", ""),
        "code": code,
        "status": _SIGNALS.get(status, status) if code in ("killed", "dumped") else status,
        "restarts": int(show.get("NRestarts", "0") or 0),
    }


def _crashed(show: dict[str, str], restarts_before: int) -> bool:
    """The unit died: systemd restarted it since the check began, it is failed/inactive, or its main process was
    killed and none runs now (waiting for the automatic restart). ``NRestarts`` survives a manual restart, hence the
    baseline."""
    if int(show.get("NRestarts", "0") or 0) > restarts_before:
        return True
    if show.get("ActiveState") in ("failed", "inactive"):
        return True
    return show.get("ExecMainCode") in ("2", "3") and show.get("MainPID") == "0"


def _http(url: str, body: dict[str, object] | None, timeout: float) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    if not url.startswith("http://"):
        raise ValueError(f"not an http:// URL: {url!r}")
    headers = {"Content-Type": "application/json"} if data else {}
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - http:// checked above
    # The URL is the service's own bind address on this host (never a proxy: those are for outbound traffic).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read(512).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def _probe(url: str, command: list[str]) -> tuple[bool, str]:
    if url:
        status, text = _http(url, None, 5)
        return 200 <= status < 300, f"{url} answered {status or 'nothing'}: {text.strip()[:200]}"
    proc = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return proc.returncode == 0, f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()[:200]}"


def _journal(unit: str, lines: int) -> list[str]:
    proc = subprocess.run(
        ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat", "-b"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.splitlines()[-lines:]


def _exposure(unit: str) -> dict[str, object] | None:
    try:
        proc = subprocess.run(
            ["systemd-analyze", "security", "--no-pager", unit], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _EXPOSURE.search(proc.stdout)
    return {"score": float(m.group(1)), "level": m.group(2)} if m else None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "str", "required": True},
            "url": {"type": "str", "default": ""},
            "command": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 180},
            "request_url": {"type": "str", "default": ""},
            "request_body": {"type": "dict", "default": {}},
            "journal_lines": {"type": "int", "default": 20},
        },
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=False, healthy=True, reason="check mode: not probed", skipped=True)
    if not p["url"] and not p["command"]:
        module.fail_json(msg="gapseal_service_check needs url or command")
    unit = p["unit"]
    start = time.monotonic()
    deadline = start + p["timeout"]
    reason = "not ready"
    healthy = False
    request: dict[str, object] = {}
    restarts_before = int(_show(unit).get("NRestarts", "0") or 0)
    while True:
        show = _show(unit)
        if _crashed(show, restarts_before):
            ex = _exit(show)
            reason = f"the unit stopped: {ex['code'] or 'no exit'} status {ex['status']}, result {ex['result']}"
            break
        ok, reason = _probe(p["url"], p["command"])
        if ok:
            healthy = True
            break
        if time.monotonic() >= deadline:
            reason = f"not healthy within {p['timeout']}s: {reason}"
            break
        time.sleep(0.5)
    ready = round(time.monotonic() - start, 3)
    if healthy and p["request_url"]:
        t0 = time.monotonic()
        status, text = _http(p["request_url"], p["request_body"], max(5.0, deadline - time.monotonic() + 60))
        request = {"status": status, "seconds": round(time.monotonic() - t0, 3), "excerpt": text.strip()[:300]}
        if not 200 <= status < 300:
            healthy = False
            reason = f"healthy, but the request to {p['request_url']} answered {status or 'nothing'}: {text[:200]}"
        elif _crashed(_show(unit), restarts_before):
            healthy = False
            reason = "the unit died while answering the request"
    show = _show(unit)
    module.exit_json(
        changed=False,
        healthy=healthy,
        reason="" if healthy else reason,
        exit=_exit(show),
        journal=[] if healthy else _journal(unit, p["journal_lines"]),
        exposure=_exposure(unit),
        ready_seconds=ready,
        request=request,
    )


if __name__ == "__main__":
    main()
