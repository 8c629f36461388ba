"""gapseal.bundler.elf: what a build's binaries need, read from real ELF files the test compiles with the C compiler.

"Newer glibc" and "other machine" binaries are real compiled binaries with one header field patched (the version
name in .dynstr, e_machine): the test first shows that the real dynamic loader refuses each patched copy for exactly
that reason, so the checker is judged against what the kernel and ld.so do, not against our own idea of it.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from gapseal.bundler.elf import (
    ElfReadError,
    describe_binaries,
    parse_ldconfig,
    parse_version,
    read_elf,
    scan_files,
    walk_files,
)

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
LIB = "int gapseal_answer(void) { return 42; }\n"
USES_LIB = '#include <stdio.h>\nint gapseal_answer(void);\nint main(void) { printf("%d\\n", gapseal_answer()); }\n'


def cc(out: Path, source: str, *args: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["cc", "-O0", "-o", str(out), str(src), *args], check=True, capture_output=True)
    src.unlink()
    return out


def highest_glibc(path: Path) -> str:
    info = read_elf(path.open("rb"), path.stat().st_size, path.name)
    assert info.glibc is not None
    return ".".join(map(str, info.glibc))


def newer_glibc_copy(binary: Path, out: Path) -> Path:
    """A copy of ``binary`` whose highest GLIBC_ version need reads 9.x (same length, so no offset moves)."""
    old = f"GLIBC_{highest_glibc(binary)}\0".encode()
    new = b"GLIBC_9" + old[len(b"GLIBC_2") :]
    out.write_bytes(binary.read_bytes().replace(old, new))
    out.chmod(0o755)
    return out


def other_machine_copy(binary: Path, out: Path, machine: int = 183) -> Path:
    data = bytearray(binary.read_bytes())
    data[18:20] = struct.pack("<H", machine)  # e_machine (little-endian file)
    out.write_bytes(bytes(data))
    out.chmod(0o755)
    return out


def test_reads_a_compiled_executable(tmp_path: Path) -> None:
    exe = cc(tmp_path / "hello", HELLO)
    info = read_elf(exe.open("rb"), exe.stat().st_size, "hello")
    assert info.machine == "x86-64" or info.machine == "aarch64"
    assert "libc.so.6" in info.needed
    assert info.glibc is not None
    assert info.glibc >= (2, 2)
    readelf = subprocess.run(["readelf", "-V", str(exe)], capture_output=True, text=True, check=False).stdout
    if readelf:  # binutils agrees on the highest GLIBC_ version
        versions = [parse_version(w) for w in readelf.replace("(", " ").replace(")", " ").split() if "GLIBC_2" in w]
        assert max(v for v in versions if v) == info.glibc


def test_the_loader_refuses_the_patched_copies_for_the_reason_we_check(tmp_path: Path) -> None:
    exe = cc(tmp_path / "hello", HELLO)
    newer = newer_glibc_copy(exe, tmp_path / "hello-newer")
    run = subprocess.run([str(newer)], capture_output=True, text=True, check=False)
    assert run.returncode != 0
    assert "GLIBC_9." in run.stderr
    assert "not found" in run.stderr
    other = other_machine_copy(exe, tmp_path / "hello-other")
    with pytest.raises(OSError, match="Exec format error"):
        subprocess.run([str(other)], capture_output=True, check=False)


def test_library_carried_by_the_build_is_internal_and_a_missing_one_is_external(tmp_path: Path) -> None:
    build = tmp_path / "build"
    (build / "lib").mkdir(parents=True)
    cc(build / "lib" / "libgsanswer.so", LIB, "-shared", "-fPIC", "-Wl,-soname,libgsanswer.so.1")
    cc(build / "server", USES_LIB, f"-L{build / 'lib'}", "-lgsanswer", "-Wl,-rpath,$ORIGIN/lib")
    (build / "README").write_text("not an ELF file\n")
    # the exe's DT_NEEDED is the library's SONAME, libgsanswer.so.1; the build provides it through that SONAME
    scan = scan_files(walk_files(build))
    assert set(scan.files) == {"lib/libgsanswer.so", "server"}
    assert "libgsanswer.so.1" in scan.files["server"].needed
    assert "libgsanswer.so.1" not in scan.external_libraries()
    assert "libc.so.6" in scan.external_libraries()
    (build / "lib" / "libgsanswer.so").unlink()
    missing = describe_binaries(scan_files(walk_files(build)))
    assert missing is not None
    assert {lib.name: lib.needed_by for lib in missing.libraries}["libgsanswer.so.1"] == "server"


def test_wheel_members_are_scanned(tmp_path: Path) -> None:
    so = cc(tmp_path / "_ext.so", LIB, "-shared", "-fPIC")
    wheel = tmp_path / "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(so, "pkg/_ext.cpython-311-x86_64-linux-gnu.so")
        z.writestr("pkg/__init__.py", "from ._ext import *\n" * 10)
    desc = describe_binaries(scan_files([("wheels/" + wheel.name, wheel)]))
    assert desc is not None
    assert desc.elf_files == 1
    assert desc.machines in (["x86-64"], ["aarch64"])


def test_a_variant_without_elf_files_has_no_record(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    assert describe_binaries(scan_files(walk_files(tmp_path))) is None


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[:40], "past the end"),  # truncated headers
        (lambda d: d[:4] + b"\x07" + d[5:], "unknown ELF class"),
        (lambda d: d[:40] + struct.pack("<Q", 1 << 60) + d[48:], "past the end"),  # e_shoff far away
    ],
)
def test_malformed_elf_is_unreadable_not_a_crash(tmp_path: Path, mangle: object, message: str) -> None:
    exe = cc(tmp_path / "hello", HELLO)
    bad = tmp_path / "bad"
    bad.write_bytes(mangle(exe.read_bytes()))  # type: ignore[operator]
    with pytest.raises(ElfReadError, match=message):
        read_elf(bad.open("rb"), bad.stat().st_size, "bad")
    scan = scan_files([("bin/bad", bad)])
    assert "bin/bad" in scan.unreadable
    desc = describe_binaries(scan)
    assert desc is not None
    assert "bin/bad" in desc.unreadable


def test_not_elf_is_refused_by_the_reader() -> None:
    with pytest.raises(ElfReadError, match="not an ELF file"):
        read_elf(io.BytesIO(b"#!/bin/sh\n" + b"\0" * 64), 74, "script")


def test_parse_ldconfig_and_versions() -> None:
    text = (
        "576 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n"
        "\tlibc.so.6 (libc6) => /lib/i386-linux-gnu/libc.so.6\n"
        "\tlibz.so.1 (libc6,AArch64) => /lib/aarch64-linux-gnu/libz.so.1\n"
    )
    libs = parse_ldconfig(text)
    assert libs["libc.so.6"] == {"libc6", "x86-64"}
    assert libs["libz.so.1"] == {"libc6", "AArch64"}
    assert parse_version("glibc 2.36") == (2, 36)
    assert parse_version("GLIBC_2.2.5") == (2, 2, 5)
    assert parse_version("GLIBC_PRIVATE") is None
