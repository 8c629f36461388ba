"""Processes of this host: those whose ``/proc/<pid>/ns/net`` is the collector's own network namespace.

Namespace test hosts share one kernel (and one ``/proc``); the network namespace tells them apart. Only processes
recognised as inference services (by command line, environment, or, for Python, the Hugging Face native libraries
mapped in ``/proc/<pid>/maps``) are reported, each with just the proxy and telemetry variables of its environment
(``/proc/<pid>/environ`` is hashed, never stored: it may hold secrets) and its command line with the values of
secret-looking options (``--api-key``, ``--hf-token``...) masked; the raw command line is hashed, not stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace
from gapseal.audit.collectors.proxy import is_proxy_variable, mask_credentials
from gapseal.audit.collectors.telemetry import HF_LIBRARY_MARKERS, TELEMETRY_VARIABLES, recognise_how
from gapseal.audit.facts import ProcessesFacts, ProcessInfo


@dataclass
class ProcEntry:
    """A process seen in ``/proc``."""

    pid: int
    comm: str
    exe: str | None
    cmdline: list[str]


def own_netns(proc: Path) -> str | None:
    """Return the collector's network namespace id (``net:[…]``), or None when ``/proc`` does not show it."""
    try:
        return os.readlink(proc / "self" / "ns" / "net")
    except OSError:
        return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def list_processes(proc: Path, netns: str | None) -> list[ProcEntry]:
    """Every process in ``netns`` (all processes when ``netns`` is None), sorted by pid; the collector excluded."""
    me = os.getpid()
    out = []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        pid = int(d.name)
        if pid == me:
            continue
        if netns is not None:
            try:
                if os.readlink(d / "ns" / "net") != netns:
                    continue
            except OSError:
                continue  # gone, or a kernel thread we may not inspect
        cmd = _read(d / "cmdline")
        if cmd is None:
            continue
        comm = (_read(d / "comm") or b"").decode("utf-8", errors="replace").strip()
        try:
            exe: str | None = os.readlink(d / "exe")
        except OSError:
            exe = None
        argv = [a.decode("utf-8", errors="replace") for a in cmd.split(b"\0") if a]
        out.append(ProcEntry(pid=pid, comm=comm, exe=exe, cmdline=argv))
    return sorted(out, key=lambda p: p.pid)


_SECRET_FLAG = re.compile(r"(key|token|secret|passw|auth|credential|cookie)", re.IGNORECASE)


def redact_argv(argv: list[str]) -> list[str]:
    """Mask the values of secret-looking options (``--api-key X``, ``--hf-token=X``) before a command line is kept."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next and not arg.startswith("-"):
            out.append("***")
            mask_next = False
            continue
        mask_next = False
        if arg.startswith("-") and _SECRET_FLAG.search(arg.split("=", 1)[0]):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=***")
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(arg)
    return out


def parse_environ(data: bytes) -> dict[str, str]:
    """Split ``/proc/<pid>/environ`` into a dict."""
    env = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            k, _, v = item.partition(b"=")
            env[k.decode("utf-8", errors="replace")] = v.decode("utf-8", errors="replace")
    return env


def relevant(env: dict[str, str]) -> dict[str, str]:
    """Only the proxy and telemetry variables of an environment, proxy credentials masked."""
    out = {}
    for k, v in sorted(env.items()):
        if is_proxy_variable(k):
            out[k] = mask_credentials(v)
        elif k in TELEMETRY_VARIABLES:
            out[k] = v
    return out


def _is_python(entry: ProcEntry) -> bool:
    names = [os.path.basename(entry.exe or ""), os.path.basename(entry.cmdline[0]) if entry.cmdline else ""]
    return any(n.startswith("python") for n in names)


def _python_libraries(proc: Path, entry: ProcEntry) -> list[str]:
    """Mapped files of a Python process that show a Hugging Face library loaded (``/proc/<pid>/maps``)."""
    data = _read(proc / str(entry.pid) / "maps")
    if data is None:
        return []
    paths = {line.split(None, 5)[-1] for line in data.decode("utf-8", errors="replace").splitlines() if "/" in line}
    return sorted(p for p in paths if any(m in p for m in HF_LIBRARY_MARKERS))


def collect_processes(
    store: RawStore, proc: Path = Path("/proc"), netns: str | None = None, build_dirs: Sequence[str] = ()
) -> ProcessesFacts:
    """Find inference processes in the collector's namespace (or ``netns``) and their relevant environment.

    ``build_dirs``: installed build directories; a program started from one is a ``gapseal-service``.
    """
    trace = Trace(store)
    ns = netns or own_netns(proc)
    if not proc.is_dir() or not any(p.name.isdigit() for p in proc.iterdir()):
        return ProcessesFacts(status="unknown", reason=f"{proc} lists no processes (procfs not mounted?)")
    if ns is None:
        return ProcessesFacts(
            status="unknown", reason=f"cannot read {proc}/self/ns/net: this host's processes cannot be told apart"
        )
    entries = list_processes(proc, ns)
    inference = []
    for e in entries:
        data = _read(proc / str(e.pid) / "environ")
        env = parse_environ(data) if data is not None else {}
        loaded = _python_libraries(proc, e) if _is_python(e) else []
        how = recognise_how(e.cmdline, env, build_dirs, loaded)
        services = list(how)
        if not services:
            continue
        trace.read(proc / str(e.pid) / "cmdline", kind="procfs", store=False)  # may carry --api-key: hashed only
        raw = trace.read(proc / str(e.pid) / "environ", kind="procfs", store=False)
        inference.append(
            ProcessInfo(
                pid=e.pid,
                comm=e.comm,
                exe=e.exe,
                cmdline=redact_argv(e.cmdline),
                services=services,
                environment=relevant(parse_environ(raw)) if raw is not None else {},
                environ_readable=raw is not None,
                recognised_by=how,
            )
        )
    return ProcessesFacts(status="ok", sources=trace.sources, netns=ns, scanned=len(entries), inference=inference)
