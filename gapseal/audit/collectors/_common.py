"""What every collector shares: running commands and reading files with provenance, and address helpers.

A ``Trace`` belongs to one domain. Every command it runs and every file it reads becomes a ``Source`` (argv or path,
exit code, sha256 of the raw bytes), and the raw bytes go into the shared ``RawStore`` unless they may hold secrets.
Nothing here raises for a missing tool or file: the caller decides whether that makes the domain ``unknown``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gapseal.audit.facts import AddressClass, Family, Network, RawOutput, Source

COMMAND_TIMEOUT = 20.0
"""Seconds any one collector command may run."""

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Configuration files larger than this are read up to the limit only (and say so)."""


class RawStore:
    """The raw outputs of one collection, keyed ``sha256:<hex>``; shared by every domain's trace, thread-safe."""

    def __init__(self) -> None:
        self._items: dict[str, RawOutput] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its hex sha256."""
        digest = hashlib.sha256(data).hexdigest()
        try:
            raw = RawOutput(encoding="utf-8", content=data.decode("utf-8"), size=len(data))
        except UnicodeDecodeError:
            raw = RawOutput(encoding="base64", content=base64.b64encode(data).decode("ascii"), size=len(data))
        with self._lock:
            self._items[f"sha256:{digest}"] = raw
        return digest

    def items(self) -> dict[str, RawOutput]:
        """Every stored output, sorted by key."""
        with self._lock:
            return dict(sorted(self._items.items()))


@dataclass
class CommandOutput:
    """What one command run produced."""

    argv: list[str]
    stdout: bytes
    stderr: bytes
    exit_code: int | None
    """Null when the command could not be started (missing, timed out)."""
    error: str | None

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """Stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", errors="replace")


@dataclass
class Trace:
    """Provenance of one domain: the sources it used, in order."""

    store: RawStore
    sources: list[Source] = field(default_factory=list)

    def run(
        self, argv: list[str], *, store: bool = True, timeout: float = COMMAND_TIMEOUT, pass_fds: tuple[int, ...] = ()
    ) -> CommandOutput:
        """Run ``argv`` (no shell, no stdin; ``pass_fds`` inherited), record it as a source and return its output."""
        exe = shutil.which(argv[0])
        if exe is None:
            out = CommandOutput(argv, b"", b"", None, f"{argv[0]}: command not found")
            self.sources.append(Source(kind="command", argv=argv, error=out.error))
            return out
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"}
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
                env=env,
                pass_fds=pass_fds,
            )
        except subprocess.TimeoutExpired:
            out = CommandOutput(argv, b"", b"", None, f"{argv[0]}: timed out after {timeout:g}s")
            self.sources.append(Source(kind="command", argv=argv, error=out.error))
            return out
        except OSError as e:
            out = CommandOutput(argv, b"", b"", None, f"{argv[0]}: {e.strerror or e}")
            self.sources.append(Source(kind="command", argv=argv, error=out.error))
            return out
        error = None
        if proc.returncode != 0:
            error = f"exit {proc.returncode}: {proc.stderr.decode('utf-8', errors='replace').strip()[:500]}"
        digest = self.store.put(proc.stdout) if store else hashlib.sha256(proc.stdout).hexdigest()
        self.sources.append(
            Source(
                kind="command",
                argv=argv,
                exit_code=proc.returncode,
                sha256=digest,
                size=len(proc.stdout),
                stored=store,
                error=error,
            )
        )
        return CommandOutput(argv, proc.stdout, proc.stderr, proc.returncode, error)

    def read(
        self,
        path: Path,
        *,
        store: bool = True,
        kind: str = "file",
        record_missing: bool = True,
        limit: int = MAX_FILE_BYTES,
    ) -> bytes | None:
        """Read ``path`` whole (up to ``limit`` bytes), record it and return the bytes; None if unreadable.

        A sysctl file needs a small ``limit``: procfs refuses a read as large as the default (ENOMEM).
        """
        src_kind = "procfs" if kind == "procfs" else "file"
        try:
            with path.open("rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            if record_missing:
                self.sources.append(Source(kind=src_kind, path=str(path), error="not found"))
            return None
        except OSError as e:
            self.sources.append(Source(kind=src_kind, path=str(path), error=e.strerror or str(e)))
            return None
        error = None
        if len(data) > limit:
            data = data[:limit]
            error = f"truncated at {limit} bytes"
        digest = self.store.put(data) if store else hashlib.sha256(data).hexdigest()
        self.sources.append(
            Source(kind=src_kind, path=str(path), sha256=digest, size=len(data), stored=store, error=error)
        )
        return data

    def read_text(self, path: Path, *, store: bool = True, record_missing: bool = True) -> str | None:
        """``read`` decoded as UTF-8 (undecodable bytes replaced)."""
        data = self.read(path, store=store, record_missing=record_missing)
        return None if data is None else data.decode("utf-8", errors="replace")

    def listdir(self, path: Path, pattern: str = "*") -> list[Path]:
        """List ``path`` (sorted, matching ``pattern``) and record the listing as a ``directory`` source."""
        if not path.is_dir():
            return []
        entries = sorted(p for p in path.glob(pattern))
        listing = "".join(f"{p.name}\n" for p in entries).encode()
        digest = self.store.put(listing)
        self.sources.append(Source(kind="directory", path=str(path), sha256=digest, size=len(listing), stored=True))
        return entries


def unreadable(trace: Trace) -> list[str]:
    """``path: error`` of every file that exists but could not be read (missing files are absence, not failure)."""
    return [
        f"{s.path}: {s.error}"
        for s in trace.sources
        if s.kind in ("file", "procfs") and s.error and s.error != "not found" and not s.error.startswith("truncated")
    ]


def under_root(root: Path, path: str | Path) -> Path:
    """Return the absolute host path ``path`` as seen under ``root`` (``/`` leaves it unchanged)."""
    p = Path(path)
    if root == Path("/"):
        return p if p.is_absolute() else Path("/") / p
    return root / str(p).lstrip("/")


# --------------------------------------------------------------------------------------------------- addresses

_DOCUMENTATION = [
    ipaddress.ip_network("192.0.2.0/24"),
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("203.0.113.0/24"),
    ipaddress.ip_network("2001:db8::/32"),
]


def address_class(address: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> AddressClass:
    """Classify an address: loopback, unspecified, link_local, documentation, multicast, private or global."""
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if any(addr in net for net in _DOCUMENTATION):
        return "documentation"
    if addr.is_multicast:
        return "multicast"
    if addr.is_private:
        return "private"
    return "global"


def family_of(address: str) -> Family:
    """``inet`` or ``inet6`` for an address or network string."""
    return "inet6" if ":" in address else "inet"


def network(text: str, *, family: Family | None = None) -> Network:
    """Parse an address or CIDR (``default`` allowed) into a ``Network`` with comparable hex bounds."""
    if text == "default":
        text = "::/0" if family == "inet6" else "0.0.0.0/0"
    net = ipaddress.ip_network(text, strict=False)
    width = 8 if net.version == 4 else 32
    first = int(net.network_address)
    last = int(net.broadcast_address)
    return Network(
        cidr=str(net),
        family="inet" if net.version == 4 else "inet6",
        prefixlen=net.prefixlen,
        first=f"{first:0{width}x}",
        last=f"{last:0{width}x}",
        address_class=address_class(net.network_address),
    )


def try_network(text: str, *, family: Family | None = None) -> Network | None:
    """``network`` that returns None for text that is not an address or network."""
    try:
        return network(text, family=family)
    except ValueError:
        return None


def parse_bool(value: str | None) -> bool | None:
    """Read a boolean the way config files and environment variables write it; None when unset or unclear."""
    if value is None:
        return None
    v = value.strip().strip("\"'").lower()
    if v in {"1", "true", "yes", "on", "y", "t"}:
        return True
    if v in {"0", "false", "no", "off", "n", "f"}:
        return False
    return None


def strip_comment(line: str) -> str:
    """Drop a ``#`` comment and surrounding white space from a config line."""
    return line.split("#", 1)[0].strip()


def parse_ini_sections(text: str) -> dict[str, dict[str, str]]:
    """Parse systemd-style ``[Section]`` / ``Key=Value`` text; later keys override earlier ones."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        if current is None or "=" not in line:
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    return sections
