"""Every command, every class of bad input: one clear message, never a traceback, the documented exit code.

Exit codes (README): 2 only for usage (arguments that do not fit, an output that exists), 1 for everything else. Each
input class is a real file (a zip, a gzip, an empty file, a tar gapseal did not write, random bytes, a directory where
a file belongs, a path that does not exist), handed to each command where it reads that input. The same cause must
read the same in every command (``output … already exists``), and a binary file's bytes must never be echoed back.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gapseal.cli import main
from tests.bundles import make_bundle, make_inputs, make_keys

INPUT_CLASSES = ("missing", "directory", "empty", "zip", "gzip", "foreign-tar", "random-bytes")


def _write_inputs(d: Path) -> dict[str, Path]:
    d.mkdir()
    (d / "directory").mkdir()
    (d / "empty").write_bytes(b"")
    with zipfile.ZipFile(d / "zip", "w") as z:
        z.writestr("model.safetensors", b"\x00" * 64)
    (d / "gzip").write_bytes(gzip.compress(b"not a bundle\n" * 100))
    with tarfile.open(d / "foreign-tar", "w") as t:
        data = b"hello\n"
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (d / "random-bytes").write_bytes(random.Random(11).randbytes(4096))
    return {c: d / c for c in INPUT_CLASSES}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("cli-errors")
    keys = make_keys(w / "keys", "team")
    make_bundle(w / "good", keys)
    (w / "spec").mkdir()
    make_inputs(w / "spec")
    (w / "inventory.yml").write_text("all:\n  hosts:\n    h1: {ansible_connection: local}\n")
    _write_inputs(w / "bad")
    (w / "out").mkdir()
    return w


@pytest.fixture(autouse=True)
def _env(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    monkeypatch.setenv("GAPSEAL_STATE_DIR", str(work / "state"))
    monkeypatch.delenv("GAPSEAL_KEY_PASSPHRASE", raising=False)


KEY, PUB, GOOD = "keys/team.key", "keys/team.pub", "good/bundle"

# command -> argv with the bad input in the place the command reads it (outputs are fresh names under out/)
COMMANDS: dict[str, Callable[[str], list[str]]] = {
    "keys show": lambda f: ["keys", "show", f],
    "bundle create (spec)": lambda f: ["bundle", "create", f, "--key", KEY, "--out", "out/create"],
    "bundle create (key)": lambda f: ["bundle", "create", "spec/bundle.yaml", "--key", f, "--out", "out/create"],
    "bundle create (base)": lambda f: [
        "bundle",
        "create",
        "spec/bundle.yaml",
        "--key",
        KEY,
        "--out",
        "out/c",
        "--base",
        f,
    ],
    "bundle pack": lambda f: ["bundle", "pack", f, "--out", "out/pack.tar"],
    "bundle unpack": lambda f: ["bundle", "unpack", f, "--out", "out/unpacked"],
    "bundle verify": lambda f: ["bundle", "verify", f, "--key", PUB],
    "bundle verify (key)": lambda f: ["bundle", "verify", GOOD, "--key", f],
    "bundle verify (trust)": lambda f: ["bundle", "verify", GOOD, "--trust", f],
    "bundle inspect": lambda f: ["bundle", "inspect", f],
    "bundle extract": lambda f: ["bundle", "extract", f, "--out", "out/x", "--model", "tiny", "--key", PUB],
    "bundle apply": lambda f: ["bundle", "apply", f, "--base", GOOD, "--out", "out/applied", "--key", PUB],
    "bundle diff": lambda f: ["bundle", "diff", GOOD, f],
    "registry load": lambda f: ["registry", "load", f, "--registry", "127.0.0.1:9", "--insecure", "--key", PUB],
    "install (bundle)": lambda f: ["install", f, "-i", "inventory.yml", "--key", PUB],
    "install (inventory)": lambda f: ["install", GOOD, "-i", f, "--key", PUB],
    "install (services)": lambda f: ["install", GOOD, "-i", "inventory.yml", "--key", PUB, "--services", f],
    "hosts detect": lambda f: ["hosts", "detect", "-i", f],
    "hosts status": lambda f: ["hosts", "status", "-i", f],
    "uninstall": lambda f: ["uninstall", "-i", f],
    "audit evaluate": lambda f: ["audit", "evaluate", f],
    "evidence verify": lambda f: ["evidence", "verify", f, "--key", PUB],
}
"""``bundle inventory`` is left out: an input it cannot read is skipped by design (the next delta carries it)."""


MISSING_WORDED_OTHERWISE = {
    # still its own wording for a missing input (exit 1 and the path named all the same)
    "evidence verify",
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_clear_message(rc: int, out: str, err: str, expected: int) -> None:
    assert rc == expected, f"exit {rc}, expected {expected}: {err}"
    assert "Traceback" not in out + err
    assert err.startswith("error: "), err
    assert len(err) < 1200, f"pages of output: {err[:300]}…"
    assert "\\x" not in err, f"escaped binary in the message: {err}"


@pytest.mark.parametrize("kind", INPUT_CLASSES)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_input_is_one_message_and_exit_1(
    work: Path, command: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = f"bad/{kind}"
    if command == "bundle create (base)" and kind == "directory":
        pytest.skip("an empty directory is a valid (empty) base: a delta against nothing is the full bundle")
    rc, out, err = _run(COMMANDS[command](path), capsys)
    _assert_one_clear_message(rc, out, err, 1)
    if (command, kind) == ("evidence verify", "directory"):  # read as an evidence directory: names the missing file
        assert "attestation.sigstore.json" in err
    else:
        assert path in err or str(work / path) in err, f"the message names the input: {err}"
    if kind == "missing" and command not in MISSING_WORDED_OTHERWISE:
        assert "does not exist" in err, f"a missing input is worded as everywhere else: {err}"


def test_a_file_that_is_not_a_bundle_is_called_that(capsys: pytest.CaptureFixture[str]) -> None:
    for kind, what in (
        ("zip", "a zip archive"),
        ("gzip", "a gzip-compressed file"),
        ("empty", "an empty file"),
        ("random-bytes", "unknown data, not a tar archive"),
    ):
        _, _, err = _run(["bundle", "verify", f"bad/{kind}", "--key", PUB], capsys)
        assert f"bad/{kind} is not a gapseal bundle: it is {what}" in err
    _, _, err = _run(["bundle", "verify", "bad/foreign-tar", "--key", PUB], capsys)
    assert "not written by gapseal" in err


# -- outputs ----------------------------------------------------------------------------------------------------------

OUTPUTS: dict[str, Callable[[str], list[str]]] = {
    "keys generate": lambda o: ["keys", "generate", o, "--unencrypted"],
    "bundle create": lambda o: ["bundle", "create", "spec/bundle.yaml", "--key", KEY, "--out", o],
    "bundle pack": lambda o: ["bundle", "pack", GOOD, "--out", f"{o}.tar"],
    "bundle extract": lambda o: ["bundle", "extract", GOOD, "--out", o, "--model", "tiny", "--key", PUB],
    "bundle inventory": lambda o: ["bundle", "inventory", GOOD, "--out", o],
    "install --report": lambda o: ["install", GOOD, "-i", "inventory.yml", "--key", PUB, "--report", o],
    "audit collect": lambda o: ["audit", "collect", "--out", o],
}


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_an_existing_output_is_exit_2_worded_the_same(
    work: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "out/existing"
    # the file the command would write: pack adds .tar, keys generate writes the pair (one half existing is enough)
    existing = work / {"bundle pack": "out/existing.tar", "keys generate": "out/existing.pub"}.get(command, target)
    existing.write_text("keep me\n")
    rc, out, err = _run(OUTPUTS[command](target), capsys)
    _assert_one_clear_message(rc, out, err, 2)
    assert "already exists" in err
    assert err.startswith("error: output "), err
    assert existing.read_text() == "keep me\n"


@pytest.fixture
def read_only_dir(work: Path) -> Iterator[Path]:
    """A directory nobody can write into: a read-only tmpfs mount as root (root ignores mode bits), else mode 0555."""
    d = work / "read-only"
    d.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], check=True)
        try:
            yield d
        finally:
            subprocess.run(["umount", str(d)], check=True)
    else:
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(0o755)


@pytest.mark.parametrize("command", [c for c in OUTPUTS if c not in ("install --report", "audit collect")])
def test_a_read_only_output_directory_is_exit_1_naming_it(
    read_only_dir: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _run(OUTPUTS[command](str(read_only_dir / "new")), capsys)
    _assert_one_clear_message(rc, out, err, 1)
    assert str(read_only_dir) in err


def test_usage_errors_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["bundle", "verify"],  # a missing argument
        ["bundle", "extract", GOOD, "--out", "out/e", "--key", PUB],  # neither --model nor --files
        ["install", GOOD, "-i", "inventory.yml", "--key", PUB, "--tags", "no-such-role"],
        ["install", GOOD, "-i", "inventory.yml", "--key", PUB, "--limit", "no-such-host"],
    ):
        assert _run(argv, capsys)[0] == 2, argv


def test_the_console_script_prints_no_traceback(work: Path) -> None:
    """Through the installed ``gapseal`` script, as a user runs it (the in-process tests cover the matrix)."""
    gapseal = str(Path(sys.executable).with_name("gapseal"))
    env = {**os.environ, "GAPSEAL_STATE_DIR": str(work / "state")}
    for argv in (["bundle", "verify", "bad/zip", "--key", PUB], ["keys", "show", "bad/random-bytes"]):
        p = subprocess.run([gapseal, *argv], cwd=work, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 1
        assert "Traceback" not in p.stdout + p.stderr
        assert p.stderr.startswith("error: ")


@pytest.fixture
def full_disk(work: Path) -> Iterator[Path]:
    """A file system with one 4 KiB page free: a tmpfs mount (root only; anyone else skips, saying why)."""
    if os.geteuid() != 0:
        pytest.skip("a full file system needs a tmpfs mount (root)")
    d = work / "full-disk"
    d.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


@pytest.mark.parametrize("command", ["bundle create", "bundle pack", "bundle extract"])
def test_a_full_disk_is_exit_1_naming_the_output(
    full_disk: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(full_disk / "new")
    argv = OUTPUTS[command](out)
    if command == "bundle create":
        argv.append("--no-link")  # a hard link would not fill the disk
    rc, stdout, err = _run(argv, capsys)
    _assert_one_clear_message(rc, stdout, err, 1)
    assert "No space left on device" in err
    assert out in err, "the output is named, not an input"
    assert sorted(p.name for p in full_disk.iterdir()) == [], "nothing half-written is left"
