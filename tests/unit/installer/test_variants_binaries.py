"""A build that cannot run on a host is an unmet requirement, and the next variant is tried.

The binaries are real ones the C compiler builds here (patched copies for "newer glibc" and "other machine", which
the real loader refuses: see tests/unit/bundler/test_elf.py); the host is this machine, probed for real
(``getconf GNU_LIBC_VERSION``, ``ldconfig -p``, ``uname -m``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gapseal.bundler.descriptor import BinaryRequirements, BuildVariant
from gapseal.bundler.elf import describe_binaries, scan_files, walk_files
from gapseal.bundler.spec import Requirements
from gapseal.installer.hardware import HostHardware, detect_local_hardware
from gapseal.installer.variants import NoVariantError, evaluate_variants, select_variant
from tests.unit.bundler.test_elf import HELLO, LIB, USES_LIB, cc, newer_glibc_copy, other_machine_copy

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


def variant(directory: Path) -> BuildVariant:
    return BuildVariant(
        backend="cpu",
        arch="amd64",
        requires=Requirements(),
        files=[],
        binaries=describe_binaries(scan_files(walk_files(directory))),
    )


@pytest.fixture(scope="module")
def host() -> HostHardware:
    hw = detect_local_hardware()
    if hw.arch != "amd64":
        pytest.skip("the variants here are declared amd64")
    assert hw.glibc is not None, "getconf GNU_LIBC_VERSION gave nothing on this machine"
    assert "libc.so.6" in hw.loader_libraries
    return hw


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("builds")
    good = root / "good"
    good.mkdir()
    exe = cc(good / "server", HELLO)
    newer = root / "newer-glibc"
    newer.mkdir()
    newer_glibc_copy(exe, newer / "server")
    other = root / "aarch64"
    other.mkdir()
    other_machine_copy(exe, other / "server")
    missing = root / "missing-lib"
    (missing / "lib").mkdir(parents=True)
    cc(missing / "lib" / "libgsanswer.so", LIB, "-shared", "-fPIC", "-Wl,-soname,libgsanswer.so.1")
    cc(missing / "server", USES_LIB, f"-L{missing / 'lib'}", "-lgsanswer")
    (missing / "lib" / "libgsanswer.so").unlink()  # the build forgot to carry it
    return {"good": good, "newer": newer, "other": other, "missing": missing}


def test_the_first_runnable_variant_is_chosen_and_every_reason_is_named(
    host: HostHardware, builds: dict[str, Path]
) -> None:
    order = ["newer", "other", "missing", "good"]
    selection = evaluate_variants([variant(builds[k]) for k in order], host, build="server")
    assert selection.selected == 3
    unmet = {order[v.index]: {c.requirement: c.reason for c in v.unmet} for v in selection.variants}
    assert set(unmet["newer"]) == {"glibc"}
    assert "server needs GLIBC_9." in unmet["newer"]["glibc"]
    assert f"the host has glibc {host.glibc}" in unmet["newer"]["glibc"]
    assert set(unmet["other"]) == {"binary_machine"}
    assert "aarch64" in unmet["other"]["binary_machine"]
    assert "x86-64" in unmet["other"]["binary_machine"]
    assert set(unmet["missing"]) == {"libraries"}
    assert "libgsanswer.so.1 (needed by server)" in unmet["missing"]["libraries"]
    assert unmet["good"] == {}
    good = selection.variants[3]
    assert {c.requirement for c in good.checks} >= {"binary_machine", "glibc", "libraries"}


def test_no_runnable_variant_fails_listing_each(host: HostHardware, builds: dict[str, Path]) -> None:
    with pytest.raises(NoVariantError) as e:
        select_variant([variant(builds["newer"]), variant(builds["other"])], host, build="server", host="h1")
    assert "GLIBC_9." in e.value.message
    assert "aarch64" in e.value.message


def test_unknown_glibc_or_loader_cache_is_unmet(host: HostHardware, builds: dict[str, Path]) -> None:
    blind = host.model_copy(update={"glibc": None, "loader_libraries": {}})
    checked = evaluate_variants([variant(builds["good"])], blind)
    reasons = {c.requirement: c.reason for c in checked.variants[0].unmet}
    assert "glibc version is unknown" in reasons["glibc"]
    assert "loader cache is unknown" in reasons["libraries"]


def test_an_unreadable_binary_fails_closed(host: HostHardware) -> None:
    record = BinaryRequirements(
        elf_files=0, machines=[], libraries=[], unreadable={"bin/x": "bin/x: a header points past the end"}
    )
    v = BuildVariant(backend="cpu", arch="amd64", requires=Requirements(), files=[], binaries=record)
    checked = evaluate_variants([v], host)
    assert checked.selected is None
    assert "past the end" in checked.variants[0].unmet[0].reason


def test_the_ansible_mapping_form_is_checked_too(host: HostHardware, builds: dict[str, Path]) -> None:
    """The installer passes variants to the action plugin as plain mappings (playbook_vars)."""
    as_mapping = variant(builds["newer"]).model_dump(mode="json")
    checked = evaluate_variants([as_mapping], host)
    assert checked.selected is None
    assert checked.variants[0].unmet[0].requirement == "glibc"
