"""Collect every fact of the local host (or of the host whose files live under ``root``) into one ``HostFacts``.

Live state (routes, firewall, sockets, processes, mounts, probes) is read from the collector's own network namespace
and ``/proc``; configuration (DNS, proxies, units, sshd, journald, the install record) from files under ``root``.
A collector that fails unexpectedly yields its domain as ``unknown`` with the error as the reason: never a pass.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from gapseal import __version__
from gapseal.audit.collectors._common import RawStore
from gapseal.audit.collectors._units import Unit, load_units
from gapseal.audit.collectors.datapath import collect_datapath
from gapseal.audit.collectors.dns import collect_dns
from gapseal.audit.collectors.firewall import collect_firewall
from gapseal.audit.collectors.integrity import collect_integrity, read_install_record, record_paths
from gapseal.audit.collectors.logs import collect_logging
from gapseal.audit.collectors.package_sources import collect_package_sources
from gapseal.audit.collectors.processes import collect_processes, list_processes, own_netns
from gapseal.audit.collectors.proxy import collect_proxy
from gapseal.audit.collectors.routes import collect_routes
from gapseal.audit.collectors.sockets import collect_sockets
from gapseal.audit.collectors.ssh import collect_ssh
from gapseal.audit.collectors.storage import Role, collect_storage
from gapseal.audit.collectors.telemetry import collect_telemetry
from gapseal.audit.collectors.timesync import collect_time
from gapseal.audit.facts import (
    AuditdFacts,
    CollectorInfo,
    DnsFacts,
    FirewallFacts,
    HostFacts,
    HostInfo,
    IntegrityFacts,
    IptablesFacts,
    JournaldFacts,
    LoggingFacts,
    NftablesFacts,
    PackageSourcesFacts,
    ProbesFacts,
    ProcessesFacts,
    ProxyFacts,
    ResolvedFacts,
    RoutesFacts,
    SocketsFacts,
    SshFacts,
    StorageFacts,
    TelemetryFacts,
    TimeFacts,
    datapath_unknown,
)
from gapseal.audit.probes import DEFAULT_ROUTE_TARGETS, DEFAULT_TIMEOUT, ProbeTarget, run_probes
from gapseal.errors import AuditError, GapsealError
from gapseal.installer.record import RECORD_RELATIVE_PATH, InstalledRecord
from gapseal.progress import NO_PROGRESS, Progress

_D = TypeVar("_D")


def _unknown(domain: str, reason: str) -> object:
    """Return an ``unknown`` instance of ``domain`` (sub-facts unknown or absent as well)."""
    if domain == "firewall":
        return FirewallFacts(
            status="unknown",
            reason=reason,
            nftables=NftablesFacts(status="unknown", reason=reason, present=False),
            iptables=IptablesFacts(status="unknown", reason=reason, present=False),
        )
    if domain == "dns":
        return DnsFacts(status="unknown", reason=reason, resolved=ResolvedFacts(present=False))
    if domain == "integrity":
        return IntegrityFacts(status="unknown", reason=reason, record_path="")
    if domain == "datapath":
        return datapath_unknown(reason)
    if domain == "logging":
        return LoggingFacts(
            status="unknown",
            reason=reason,
            journald=JournaldFacts(present=False, storage="unknown", persistent=False),
            auditd=AuditdFacts(present=False),
        )
    simple: dict[str, type] = {
        "routes": RoutesFacts,
        "processes": ProcessesFacts,
        "proxy": ProxyFacts,
        "sockets": SocketsFacts,
        "probes": ProbesFacts,
        "telemetry": TelemetryFacts,
        "storage": StorageFacts,
        "ssh": SshFacts,
        "package_sources": PackageSourcesFacts,
        "time": TimeFacts,
    }
    return simple[domain](status="unknown", reason=reason)


def _guard(domain: str, progress: Progress, fn: Callable[[], _D]) -> _D:
    progress.note(f"collecting {domain}")
    try:
        return fn()
    except GapsealError:
        raise
    except Exception as e:  # a collector bug or an unexpected host state must never read as "compliant"
        return _unknown(domain, f"collector failed: {type(e).__name__}: {e}")  # type: ignore[return-value]


def collect_facts(
    root: Path = Path("/"),
    probes: Sequence[ProbeTarget] = (),
    installed_record: InstalledRecord | Path | None = None,
    progress: Progress = NO_PROGRESS,
    *,
    proc: Path = Path("/proc"),
    data_paths: Sequence[Path] = (),
    route_targets: Sequence[str] = DEFAULT_ROUTE_TARGETS,
    probe_timeout: float = DEFAULT_TIMEOUT,
    now: datetime | None = None,
) -> HostFacts:
    """Collect the facts of this host.

    ``root``: prefix of the host's files (``/``, or a namespace host's ``gapseal_root``). ``probes``: active probe
    targets the user named. ``installed_record``: the install record (or its path) if not at
    ``{root}/var/lib/gapseal/installed.json``. ``data_paths``: extra data directories whose storage to report.
    """
    root = Path(root)
    if not root.is_dir():
        raise AuditError(f"root {root} is not a directory", where=str(root))
    store = RawStore()
    netns = own_netns(proc)
    given = installed_record if isinstance(installed_record, InstalledRecord) else None
    record_path = installed_record if isinstance(installed_record, Path) else root / RECORD_RELATIVE_PATH
    record = given or read_install_record(record_path)[0]
    build_dirs = [str(p) for p, role in record_paths(root, record) if role == "install"]
    processes: ProcessesFacts = _guard("processes", progress, lambda: collect_processes(store, proc, netns, build_dirs))
    units_error: str | None = None
    try:
        units: list[Unit] = load_units(root)
    except Exception as e:  # unreadable unit files: proxy and telemetry facts that rest on them are unknown
        units, units_error = [], f"systemd units could not be read: {type(e).__name__}: {e}"

    def integrity() -> IntegrityFacts:
        return collect_integrity(store, root, record=given, record_path=record_path, progress=progress)

    def storage() -> StorageFacts:
        paths: list[tuple[Path, Role]] = [(p, r) for p, r in record_paths(root, record)]  # type: ignore[misc]
        paths += [(Path(p), "data") for p in data_paths]
        return collect_storage(store, paths, proc)

    def sockets() -> SocketsFacts:
        return collect_sockets(store, list_processes(proc, netns), proc)

    proxy = _guard("proxy", progress, lambda: collect_proxy(store, root, units, processes, proc=proc))
    telemetry = _guard("telemetry", progress, lambda: collect_telemetry(store, processes, units, root, build_dirs))
    if units_error is not None:
        proxy = proxy.model_copy(update={"status": "unknown", "reason": units_error})
        telemetry = telemetry.model_copy(update={"status": "unknown", "reason": units_error})

    return HostFacts(
        collected_at=(now or datetime.now(UTC)).replace(microsecond=0),
        collector=CollectorInfo(version=__version__),
        host=HostInfo(
            hostname=socket.gethostname(),
            root=str(root),
            netns=netns,
            kernel=os.uname().release,
            machine_id=_machine_id(root),
            os=_os_name(root),
        ),
        routes=_guard("routes", progress, lambda: collect_routes(store)),
        firewall=_guard("firewall", progress, lambda: collect_firewall(store)),
        dns=_guard("dns", progress, lambda: collect_dns(store, root)),
        processes=processes,
        proxy=proxy,
        sockets=_guard("sockets", progress, sockets),
        probes=_guard(
            "probes",
            progress,
            lambda: run_probes(store, route_targets=route_targets, active=probes, timeout=probe_timeout),
        ),
        telemetry=telemetry,
        storage=_guard("storage", progress, storage),
        integrity=_guard("integrity", progress, integrity),
        ssh=_guard("ssh", progress, lambda: collect_ssh(store, root)),
        logging=_guard("logging", progress, lambda: collect_logging(store, root)),
        package_sources=_guard("package_sources", progress, lambda: collect_package_sources(store, root)),
        time=_guard("time", progress, lambda: collect_time(store, root)),
        datapath=_guard("datapath", progress, lambda: collect_datapath(store, proc)),
        raw_outputs=store.items(),
    )


def _os_name(root: Path) -> str | None:
    """``PRETTY_NAME`` from os-release (the report names each host's OS); None when it cannot be read."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "PRETTY_NAME":
                return value.strip().strip("\"'") or None
    return None


def _machine_id(root: Path) -> str | None:
    try:
        return (root / "etc" / "machine-id").read_text().strip() or None
    except OSError:
        return None
