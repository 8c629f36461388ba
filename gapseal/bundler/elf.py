"""What a build's ELF executables and shared objects need from the host that runs them.

Read at ``bundle create`` and recorded in the descriptor per build variant (so ``hosts detect`` can show it offline),
then checked per host by the installer before anything is copied (``gapseal.installer.variants``). A build that
cannot run on a host is caught there, as an unmet requirement with its reason, and the next variant is tried.

For every ELF file of a variant, including the shared objects inside Python wheels (``*.whl``) the variant carries
(a wheel is installed into a venv on the host, so its extension modules are what runs), we read:

* ``e_machine``: the instruction set (``x86-64``, ``aarch64``, ...);
* ``DT_NEEDED``: the libraries the dynamic loader must find;
* ``DT_SONAME``: the name under which the file itself satisfies another file's ``DT_NEEDED``;
* ``.gnu.version_r``: the symbol versions needed, of which the highest ``GLIBC_x.y`` is what matters for the host's
  glibc (a binary linked against glibc 2.38 fails to start on a 2.36 host with "version `GLIBC_2.38' not found").

A needed library that some ELF file of the same variant provides (by SONAME or file name, the way an ``$ORIGIN``
RUNPATH or auditwheel's ``<pkg>.libs/`` directory supplies it) is internal; every other one must be resolvable from the
host's loader cache (``ldconfig -p``). The reader uses section headers (what binutils' ``readelf -d -V`` shows) and
refuses, rather than guesses at, a file it cannot parse: such a file is listed as unreadable, which makes the
variant's binary check unmet at install (fail closed).

Only ``struct`` and seeks: no third-party ELF library, no whole-file reads (a file is opened once, headers and the few
sections needed are read by offset).
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gapseal.bundler.descriptor import BinaryRequirements, NeededLibrary

ELF_MAGIC = b"\x7fELF"

# e_machine values (elf.h) and their names as binutils prints them.
MACHINES = {3: "i386", 40: "arm", 62: "x86-64", 183: "aarch64", 243: "riscv", 21: "ppc64", 22: "s390"}

# uname -m -> the e_machine name a host runs natively.
UNAME_TO_MACHINE = {
    "x86_64": "x86-64",
    "amd64": "x86-64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "i686": "i386",
    "i386": "i386",
    "riscv64": "riscv",
    "ppc64le": "ppc64",
    "s390x": "s390",
}

# The arch tag `ldconfig -p` prints for a 64-bit library of each machine ("libc.so.6 (libc6,x86-64) => ...").
LDCONFIG_TAGS = {"x86-64": "x86-64", "aarch64": "AArch64", "riscv": "riscv64", "ppc64": "64bit", "s390": "64bit"}

_SHT_DYNAMIC = 6
_SHT_GNU_VERNEED = 0x6FFFFFFE
_DT_NULL, _DT_NEEDED, _DT_SONAME = 0, 1, 14
_MAX_SECTION = 64 * 1024 * 1024  # a dynamic section or string table larger than this is not a real one
_MAX_WHEEL_MEMBER = 2 * 1024**3


class ElfReadError(ValueError):
    """A file starts like ELF but its headers cannot be read; the message says what is wrong."""


@dataclass(frozen=True)
class ElfInfo:
    """The facts of one ELF file that decide whether a host can load it."""

    machine: str
    needed: tuple[str, ...]
    soname: str | None
    glibc: tuple[int, ...] | None
    """The highest ``GLIBC_x.y[.z]`` version this file needs, or None when it needs none."""


def version_text(version: tuple[int, ...] | None) -> str | None:
    """``(2, 34)`` -> ``"2.34"``."""
    return None if version is None else ".".join(str(p) for p in version)


def parse_version(text: str) -> tuple[int, ...] | None:
    """``"2.34"`` (or ``"glibc 2.34"``, ``"GLIBC_2.34"``) -> ``(2, 34)``; None when there is no version in it."""
    word = text.strip().split()[-1] if text.strip() else ""
    word = word.removeprefix("GLIBC_")
    parts = word.split(".")
    if not parts or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


class _Reader:
    def __init__(self, f: BinaryIO, size: int, name: str) -> None:
        self.f, self.size, self.name = f, size, name

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ElfReadError(f"{self.name}: a header points past the end of the file")
        self.f.seek(offset)
        data = self.f.read(length)
        if len(data) != length:
            raise ElfReadError(f"{self.name}: short read")
        return data


def _cstr(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    if offset >= len(table) or end < 0:
        raise ElfReadError("a string offset points outside its string table")
    return table[offset:end].decode("utf-8", "replace")


def read_elf(f: BinaryIO, size: int, name: str) -> ElfInfo:
    """Read the ELF facts of the open file ``f`` of ``size`` bytes (``name`` for messages)."""
    r = _Reader(f, size, name)
    ident = r.read(0, 16)
    if ident[:4] != ELF_MAGIC:
        raise ElfReadError(f"{name}: not an ELF file")
    cls, data = ident[4], ident[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise ElfReadError(f"{name}: unknown ELF class {cls} or data encoding {data}")
    end = "<" if data == 1 else ">"
    if cls == 2:
        hdr = struct.unpack(end + "HHIQQQIHHHHHH", r.read(16, 48))
    else:
        hdr = struct.unpack(end + "HHIIIIIHHHHHH", r.read(16, 36))
    e_machine, e_shoff, e_shentsize, e_shnum = hdr[1], hdr[5], hdr[10], hdr[11]
    machine = MACHINES.get(e_machine, f"machine-{e_machine}")
    sections = []
    if e_shoff and e_shnum:
        want = 64 if cls == 2 else 40
        if e_shentsize < want or e_shnum > 65535:
            raise ElfReadError(f"{name}: implausible section header table")
        fmt = end + ("IIQQQQIIQQ" if cls == 2 else "IIIIIIIIII")
        for i in range(e_shnum):
            raw = r.read(e_shoff + i * e_shentsize, want)
            sh = struct.unpack(fmt, raw)
            # (type, offset, size, link)
            sections.append((sh[1], sh[4], sh[5], sh[6]))

    def section_bytes(index: int) -> bytes:
        if not 0 <= index < len(sections):
            raise ElfReadError(f"{name}: a section link points at no section")
        _, offset, length, _ = sections[index]
        if length > _MAX_SECTION:
            raise ElfReadError(f"{name}: a section of {length} bytes is implausibly large")
        return r.read(offset, length)

    needed: list[str] = []
    soname: str | None = None
    glibc: tuple[int, ...] | None = None
    try:
        for sh_type, offset, length, link in sections:
            if sh_type == _SHT_DYNAMIC:
                strtab = section_bytes(link)
                entry = 16 if cls == 2 else 8
                dyn = r.read(offset, min(length, _MAX_SECTION))
                for pos in range(0, len(dyn) - entry + 1, entry):
                    tag, val = struct.unpack(end + ("qQ" if cls == 2 else "iI"), dyn[pos : pos + entry])
                    if tag == _DT_NULL:
                        break
                    if tag == _DT_NEEDED:
                        needed.append(_cstr(strtab, val))
                    elif tag == _DT_SONAME:
                        soname = _cstr(strtab, val)
            elif sh_type == _SHT_GNU_VERNEED:
                strtab = section_bytes(link)
                blob = r.read(offset, min(length, _MAX_SECTION))
                pos, seen = 0, 0
                while pos + 16 <= len(blob) and seen < 4096:
                    _, cnt, _, aux, nxt = struct.unpack(end + "HHIII", blob[pos : pos + 16])
                    apos = pos + aux
                    for _ in range(min(cnt, 4096)):
                        if apos + 16 > len(blob):
                            raise ElfReadError(f"{name}: truncated version-needed entry")
                        _, _, _, vna_name, vna_next = struct.unpack(end + "IHHII", blob[apos : apos + 16])
                        label = _cstr(strtab, vna_name)
                        if label.startswith("GLIBC_"):
                            v = parse_version(label)
                            if v is not None and (glibc is None or v > glibc):
                                glibc = v
                        if not vna_next:
                            break
                        apos += vna_next
                    seen += 1
                    if not nxt:
                        break
                    pos += nxt
    except struct.error as e:
        raise ElfReadError(f"{name}: malformed dynamic or version section ({e})") from e
    except ElfReadError as e:
        raise ElfReadError(str(e) if str(e).startswith(name) else f"{name}: {e}") from e
    return ElfInfo(machine=machine, needed=tuple(dict.fromkeys(needed)), soname=soname, glibc=glibc)


def _is_elf(f: BinaryIO) -> bool:
    f.seek(0)
    return f.read(4) == ELF_MAGIC


@dataclass
class BinaryScan:
    """Every ELF file of one build variant, summarised for the descriptor (see ``BinaryRequirements``)."""

    files: dict[str, ElfInfo] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def machines(self) -> list[str]:
        """Instruction sets used, sorted."""
        return sorted({i.machine for i in self.files.values()})

    def glibc(self) -> tuple[tuple[int, ...], str] | None:
        """The highest glibc version any file needs, with the first file (by path) that needs it."""
        best: tuple[tuple[int, ...], str] | None = None
        for path in sorted(self.files):
            v = self.files[path].glibc
            if v is not None and (best is None or v > best[0]):
                best = (v, path)
        return best

    def external_libraries(self) -> dict[str, str]:
        """Each needed library that no file of the variant provides, with the first file (by path) needing it."""
        provided = {Path(p.split("!", 1)[-1]).name for p in self.files}
        provided |= {i.soname for i in self.files.values() if i.soname}
        out: dict[str, str] = {}
        for path in sorted(self.files):
            for lib in self.files[path].needed:
                if lib not in provided and lib not in out:
                    out[lib] = path
        return out


def _scan_wheel(wheel: Path, rel: str, scan: BinaryScan) -> None:
    try:
        with zipfile.ZipFile(wheel) as z:
            for member in z.infolist():
                if member.is_dir() or member.file_size < 64:
                    continue
                where = f"{rel}!{member.filename}"
                if member.file_size > _MAX_WHEEL_MEMBER:
                    scan.unreadable[where] = f"member of {member.file_size} bytes is too large to inspect"
                    continue
                with z.open(member) as src:
                    if src.read(4) != ELF_MAGIC:
                        continue
                with z.open(member) as src, tempfile.TemporaryFile() as tmp:
                    shutil.copyfileobj(src, tmp, 1024 * 1024)
                    try:
                        scan.files[where] = read_elf(tmp, member.file_size, where)
                    except ElfReadError as e:
                        scan.unreadable[where] = str(e)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        scan.unreadable[rel] = f"wheel cannot be read: {e}"


def scan_files(files: Iterable[tuple[str, Path]]) -> BinaryScan:
    """Scan ``(relative path, absolute path)`` pairs of one variant; non-ELF files are skipped."""
    scan = BinaryScan()
    for rel, path in files:
        if rel.endswith(".whl"):
            _scan_wheel(path, rel, scan)
            continue
        try:
            with path.open("rb") as f:
                if not _is_elf(f):
                    continue
                size = path.stat().st_size
                scan.files[rel] = read_elf(f, size, rel)
        except ElfReadError as e:
            scan.unreadable[rel] = str(e)
        except OSError as e:
            scan.unreadable[rel] = f"cannot be read: {e.strerror or e}"
    return scan


def walk_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Every regular file below ``root`` as ``(relative posix path, path)``, sorted."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        yield path.relative_to(root).as_posix(), path


def parse_ldconfig(text: str) -> dict[str, set[str]]:
    """``ldconfig -p`` output -> {library name: {flags}}, e.g. ``{"libc.so.6": {"libc6", "x86-64"}}``."""
    libs: dict[str, set[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if "=>" not in line or "(" not in line:
            continue
        name, _, rest = line.partition(" (")
        flags = rest.split(")", 1)[0]
        libs.setdefault(name.strip(), set()).update(f.strip() for f in flags.split(","))
    return libs


def describe_binaries(scan: BinaryScan) -> BinaryRequirements | None:
    """The descriptor's record of ``scan``; None for a variant without ELF files (a script, a wheel of pure Python)."""
    if not scan.files and not scan.unreadable:
        return None
    glibc = scan.glibc()
    return BinaryRequirements(
        elf_files=len(scan.files),
        machines=scan.machines,
        glibc=version_text(glibc[0]) if glibc else None,
        glibc_needed_by=glibc[1] if glibc else None,
        libraries=[NeededLibrary(name=n, needed_by=by) for n, by in sorted(scan.external_libraries().items())],
        unreadable=dict(sorted(scan.unreadable.items())),
    )
