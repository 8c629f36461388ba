"""Integrity of installed files against the install record ``{root}/var/lib/gapseal/installed.json``.

The record (``gapseal.installer.record``) lists every installed file with the sha256 it was verified to have at
install time; the record's bundle ``manifest_digest`` ties it to the signed bundle. Here every file is re-hashed.
Record paths are absolute host paths; under a ``root`` prefix a path that already starts with the prefix is used as
is, any other is taken relative to the prefix.
"""

from __future__ import annotations

import stat
from pathlib import Path

from gapseal.audit.collectors._common import RawStore, Trace, under_root
from gapseal.audit.facts import FileIntegrity, IntegrityFacts
from gapseal.errors import InstallError
from gapseal.hashing import hash_file, parallel_map
from gapseal.installer.record import RECORD_RELATIVE_PATH, InstalledRecord, RecordedFile, parse_record
from gapseal.progress import NO_PROGRESS, Progress


def host_path(root: Path, recorded: str) -> Path:
    """Where a recorded absolute path is under ``root``."""
    if root != Path("/") and (recorded == str(root) or recorded.startswith(str(root).rstrip("/") + "/")):
        return Path(recorded)
    return under_root(root, recorded)


def check_file(root: Path, f: RecordedFile, progress: Progress = NO_PROGRESS) -> FileIntegrity:
    """Re-hash one recorded file and say whether it still matches."""
    expected = f.digest.removeprefix("sha256:")
    p = host_path(root, f.path)
    base = {"path": f.path, "expected_sha256": expected, "expected_size": f.size}
    try:
        st = p.lstat()
    except FileNotFoundError:
        return FileIntegrity(**base, state="missing")
    except OSError:
        return FileIntegrity(**base, state="unreadable")
    if not stat.S_ISREG(st.st_mode):
        return FileIntegrity(**base, state="not_regular")
    try:
        d = hash_file(p, progress=progress, label=f"verifying {p.name}")
    except OSError:
        return FileIntegrity(**base, state="unreadable", actual_size=st.st_size)
    ok = d.sha256 == expected and d.size == f.size
    return FileIntegrity(**base, actual_sha256=d.sha256, actual_size=d.size, state="ok" if ok else "modified")


def read_install_record(path: Path, trace: Trace | None = None) -> tuple[InstalledRecord | None, str | None]:
    """Read and parse an install record; returns the record or the reason it is unusable (missing, invalid)."""
    if trace is not None:
        data = trace.read(path)
    else:
        try:
            data = path.read_bytes()
        except OSError:
            data = None
    if data is None:
        return None, f"no readable install record at {path}"
    try:
        return parse_record(data, where=str(path)), None
    except InstallError as e:
        return None, e.message


def collect_integrity(
    store: RawStore,
    root: Path,
    *,
    record: InstalledRecord | None = None,
    record_path: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> IntegrityFacts:
    """Check every file of the install record at ``record_path`` (default under ``root``) or of ``record``."""
    trace = Trace(store)
    path = record_path or root / RECORD_RELATIVE_PATH
    loaded, reason = read_install_record(path, trace)
    if record is None:
        record = loaded
    if record is None:
        return IntegrityFacts(
            status="unknown", reason=reason, sources=trace.sources, record_path=str(path), record_present=path.exists()
        )
    files = parallel_map(lambda f: check_file(root, f, progress), record.files)
    failures = [f"{r.state}: {r.path}" for r in files if r.state != "ok"]
    record_src = next((s for s in trace.sources if s.path == str(path) and s.sha256), None)
    return IntegrityFacts(
        status="ok",
        sources=trace.sources,
        record_path=str(path),
        record_present=record_src is not None,
        record_sha256=record_src.sha256 if record_src else None,
        bundle_name=record.bundle.name,
        bundle_version=record.bundle.version,
        manifest_digest=record.bundle.manifest_digest,
        variants=[f"{name}:{v.backend}/{v.arch}" for name, v in sorted(record.variants.items())],
        files=files,
        checked=len(files),
        ok=len(files) - len(failures),
        failures=failures,
    )


def record_paths(root: Path, record: InstalledRecord | None) -> list[tuple[Path, str]]:
    """Model and install directories named by the record, as host paths with their storage role."""
    if record is None:
        return []
    out: list[tuple[Path, str]] = []
    for _, m in sorted(record.models.items()):
        out.append((host_path(root, m.dir), "model"))
    for _, v in sorted(record.variants.items()):
        out.append((host_path(root, v.dir), "install"))
    return out
