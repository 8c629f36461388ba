"""Signed names are still untrusted: wherever a name becomes a path, nothing is written outside its root.

Every case re-signs a hostile descriptor with the *trusted* key (a stolen or careless key), or hands a writer a name
that a bypassed check would have let through, and asserts the exit code, that the message names the problem, and that
nothing appeared where the name pointed. Writers covered: ``bundle extract`` (and ``extract_component`` behind it),
``bundle apply``, ``bundle unpack``, the installer's filter plugins and the install record.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapseal.bundler.descriptor import FileEntry
from gapseal.bundler.extract import component_files, extract_component
from gapseal.bundler.verify import VerifiedBundle, verify_bundle
from gapseal.errors import GapsealError, InstallError, VerificationError
from gapseal.installer.record import parse_record
from gapseal.names import join_under
from gapseal.resources import playbooks_dir
from tests.adversarial.conftest import Gapseal, refused
from tests.adversarial.forge import Layout, resign
from tests.bundles import KeyPair, make_bundle, make_keys

# (case id, hostile file path, fragment the refusal must carry)
HOSTILE_PATHS = [
    ("dotdot-to-etc", "../../../etc/x", "'..' component"),
    ("dotdot-inside", "a/../../x", "'..' component"),
    ("absolute", "/etc/x", "is absolute"),
    ("empty-component", "a//b", "empty component"),
    ("dot-component", "./x", "'.' component"),
    ("backslash", "..\\..\\x", "backslash"),
    ("nul", "x\x00y", "control character"),
    ("newline", "x\ny", "control character"),
    ("escape", "x\x1b[31m", "control character"),
    ("c1-control", "x\x85y", "control character"),
    ("component-over-255-bytes", "a" * 256, "over the 255-byte limit"),
    ("path-over-4096-bytes", "/".join(["d" * 200] * 21), "over the 4096-byte limit"),
    ("empty", "", "empty"),
]


def _extract(gapseal: Gapseal, bundle: Path, keys: KeyPair, out: Path, *extra: object) -> Any:
    return gapseal("bundle", "extract", bundle, "--model", "tiny", "--out", out, "--key", keys.public_path, *extra)


def _nothing_outside(root: Path) -> None:
    """No file named x (the hostile targets) appeared anywhere under the test's directory but the bundle itself."""
    stray = [p for p in root.rglob("x") if "made" not in p.parts]
    assert not stray, stray
    assert not Path("/etc/x").exists()


@pytest.mark.parametrize(("path", "fragment"), [c[1:] for c in HOSTILE_PATHS], ids=[c[0] for c in HOSTILE_PATHS])
def test_extract_refuses_a_trusted_signed_hostile_file_path(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal, path: str, fragment: str
) -> None:
    layout = Layout(bundle)
    desc = layout.descriptor()
    desc["models"][0]["files"][0]["path"] = path
    resign(bundle, keys.private, desc)
    result = _extract(gapseal, bundle, keys, tmp_path / "out")
    refused(result, fragment)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    _nothing_outside(tmp_path)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("../../../etc/x", "'..' component"), ("a/b", "slash"), (".hidden", "must start with a letter or digit")],
    ids=["dotdot-model-name", "slash-model-name", "dot-model-name"],
)
def test_extract_refuses_a_trusted_signed_hostile_model_name(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal, name: str, fragment: str
) -> None:
    layout = Layout(bundle)
    desc = layout.descriptor()
    desc["models"][0]["name"] = name
    resign(bundle, keys.private, desc)
    result = gapseal("bundle", "extract", bundle, "--model", name, "--out", tmp_path / "o", "--key", keys.public_path)
    refused(result, fragment)
    assert not (tmp_path / "o").exists()
    _nothing_outside(tmp_path)


@pytest.mark.parametrize(
    ("first", "second"),
    [("Model.bin", "model.bin"), ("caf\u00e9.bin", "cafe\u0301.bin"), ("a", "a/b")],
    ids=["case-fold-collision", "nfc-collision", "file-and-directory-collision"],
)
def test_extract_refuses_two_signed_paths_that_are_one_file(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal, first: str, second: str
) -> None:
    layout = Layout(bundle)
    desc = layout.descriptor()
    files = desc["models"][0]["files"]
    files[0]["path"] = first
    files[1]["path"] = second
    files.sort(key=lambda f: f["path"])
    resign(bundle, keys.private, desc)
    result = _extract(gapseal, bundle, keys, tmp_path / "out")
    refused(result, first)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# The writer's own check: even if verify had let a name through, extract_component refuses it
# ---------------------------------------------------------------------------------------------------------------


def _bypassed(bundle: Path, keys: KeyPair, path: str) -> tuple[VerifiedBundle, list[FileEntry]]:
    """A genuinely verified bundle whose in-memory descriptor then gets a hostile path (as a verify bug would)."""
    verified = verify_bundle(bundle, [keys.public])
    files = component_files(verified, "model", "tiny")
    files[0] = files[0].model_copy(update={"path": path})
    return verified, files


@pytest.mark.parametrize(
    "path",
    ["../../../etc/x", "/etc/x", "a/../../x", "x\x00", "..\\x", "a" * 256],
    ids=["dotdot", "absolute", "dotdot-inside", "nul", "backslash", "long-component"],
)
def test_extract_component_checks_paths_itself(tmp_path: Path, bundle: Path, keys: KeyPair, path: str) -> None:
    verified, files = _bypassed(bundle, keys, path)
    with pytest.raises(VerificationError, match="unsafe file path") as info:
        extract_component(verified, files, tmp_path / "out")
    assert "report it to the security team" in (info.value.hint or "")
    assert not (tmp_path / "out").exists()
    _nothing_outside(tmp_path)


def test_extract_component_refuses_a_collision_itself(tmp_path: Path, bundle: Path, keys: KeyPair) -> None:
    verified = verify_bundle(bundle, [keys.public])
    files = component_files(verified, "model", "tiny")
    files[1] = files[1].model_copy(update={"path": files[0].path.upper()})
    with pytest.raises(VerificationError, match="would be one on disk"):
        extract_component(verified, files, tmp_path / "out")


def test_join_under_refuses_a_symlink_planted_inside_the_root(tmp_path: Path) -> None:
    """The final-path check resolves parents: a link inside the root pointing out of it is caught."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "models").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="would be written outside"):
        join_under(root, "models/x")
    (root / "last").symlink_to(tmp_path / "target")
    with pytest.raises(ValueError, match="symbolic link"):
        join_under(root, "last")


def test_extract_never_writes_through_a_link_at_the_output(tmp_path: Path, bundle: Path, keys: KeyPair) -> None:
    """A symlink planted at --out is refused like any existing output; its target is untouched."""
    target = tmp_path / "victim"
    target.mkdir()
    (tmp_path / "out").symlink_to(target)
    verified = verify_bundle(bundle, [keys.public])
    with pytest.raises(Exception, match="already exists"):
        extract_component(verified, component_files(verified, "model", "tiny"), tmp_path / "out")
    assert list(target.iterdir()) == []


def test_a_blob_turned_into_a_symlink_after_verify_is_not_followed(tmp_path: Path, bundle: Path, keys: KeyPair) -> None:
    """Between verify and extract, a blob replaced by a link to a secret: the copy refuses to read through it."""
    verified = verify_bundle(bundle, [keys.public])
    files = component_files(verified, "model", "tiny")
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:x:0:0\n")
    blob = verified.blob_path(files[0].digest)
    blob.unlink()
    blob.symlink_to(secret)
    with pytest.raises(VerificationError, match="cannot be read since verification"):
        extract_component(verified, files, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Extracted files never share an inode with the bundle
# ---------------------------------------------------------------------------------------------------------------


def test_extracted_files_share_no_inode_and_editing_them_leaves_the_bundle_intact(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    result = _extract(gapseal, bundle, keys, tmp_path / "out")
    assert result.code == 0, result.err
    verified = verify_bundle(bundle, [keys.public])
    for entry in component_files(verified, "model", "tiny"):
        extracted = tmp_path / "out" / entry.path
        blob = verified.blob_path(entry.digest)
        assert extracted.stat().st_ino != blob.stat().st_ino
        assert extracted.stat().st_nlink == 1
        with extracted.open("r+b") as f:
            f.write(b"EDITED")
    assert gapseal("bundle", "verify", bundle, "--key", keys.public_path).code == 0


# ---------------------------------------------------------------------------------------------------------------
# The installer's filter plugins: the controller refuses before any host is touched
# ---------------------------------------------------------------------------------------------------------------


def _filters() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("gapseal_filters", playbooks_dir() / "filter_plugins" / "gapseal.py")
    assert spec is not None
    assert spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()  # type: ignore[no-any-return]


F = _filters()
GOOD_FILE = {"path": "w.bin", "digest": "sha256:" + "0" * 64, "size": 1}
UP = {**GOOD_FILE, "path": "../x"}
UP2 = {**GOOD_FILE, "path": "a/../../x"}


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: F["gapseal_path"]("/var/lib/gapseal/models", "../../../etc/x"), "'..' component"),
        (lambda: F["gapseal_path"]("/srv/prefix", "a/../../../etc"), "'..' component"),
        (lambda: F["gapseal_path"]("/", "x\ny"), "control character"),
        (lambda: F["gapseal_model_dirs"]([{"name": "../../etc", "files": []}], "/m"), "model name"),
        (lambda: F["gapseal_model_dirs"]([{"name": "m", "files": [{**GOOD_FILE, "path": "../x"}]}], "/m"), "'..'"),
        (lambda: F["gapseal_model_dirs"]([{"name": "m", "files": [{**GOOD_FILE, "path": "/etc/x"}]}], "/m"), "absol"),
        (lambda: F["gapseal_preflight_files"]([{"name": "m/../..", "files": []}], [], "/r"), "model name"),
        (
            lambda: F["gapseal_preflight_files"](
                [{"name": "m", "files": [{**GOOD_FILE, "path": "a/../../x"}]}], [], "/"
            ),
            "'..'",
        ),
        (
            lambda: F["gapseal_selected_variants"](
                [{"name": "../srv", "variants": [{"backend": "cpu", "arch": "amd64", "files": []}]}],
                {"../srv": {"chosen": {"backend": "cpu", "arch": "amd64"}}},
                "/b",
            ),
            "build name",
        ),
        (
            lambda: F["gapseal_selected_variants"](
                [
                    {
                        "name": "s",
                        "variants": [{"backend": "cpu", "arch": "amd64", "files": [{**GOOD_FILE, "path": "../x"}]}],
                    }
                ],
                {"s": {"chosen": {"backend": "cpu", "arch": "amd64"}}},
                "/b",
            ),
            "'..'",
        ),
        (
            lambda: F["gapseal_service_units"](
                [{"name": "../../etc/cron.d/x", "build": "s"}],
                [{"name": "s", "backend": "cpu", "arch": "amd64", "dir": "/b/s/cpu", "files": []}],
                "/m",
                {},
                "/u",
            ),
            "service name",
        ),
        (
            lambda: F["gapseal_service_units"](
                [{"name": "api", "build": "s", "exec": "../../../bin/sh"}],
                [{"name": "s", "backend": "cpu", "arch": "amd64", "dir": "/b/s/cpu", "files": []}],
                "/m",
                {},
                "/u",
            ),
            "'..'",
        ),
    ],
    ids=[
        "path-dotdot",
        "path-dotdot-under-prefix",
        "path-control-char",
        "model-dir-name",
        "model-file-dotdot",
        "model-file-absolute",
        "preflight-model-name",
        "preflight-file-dotdot",
        "variant-build-name",
        "variant-file-dotdot",
        "service-unit-name",
        "service-exec-dotdot",
    ],
)
def test_filters_refuse_hostile_names_before_any_host(call: Any, fragment: str) -> None:
    with pytest.raises(AnsibleFilterError) as info:
        call()
    assert fragment in str(info.value)


def test_filters_keep_good_paths_under_their_root() -> None:
    assert F["gapseal_path"]("/srv/prefix", "var/lib/gapseal/models", "m") == "/srv/prefix/var/lib/gapseal/models/m"
    [m] = F["gapseal_model_dirs"]([{"name": "m", "files": [GOOD_FILE]}], "/srv/prefix/models")
    assert m["dir"] == "/srv/prefix/models/m"


# ---------------------------------------------------------------------------------------------------------------
# The install record: an audit baseline that points outside the install is not believed
# ---------------------------------------------------------------------------------------------------------------

DIGEST = "sha256:" + "a" * 64


def _record(**changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "kind": "gapseal.InstalledRecord",
        "version": 1,
        "root": "/srv/prefix",
        "bundle": {"name": "clinic", "version": "1.0.0", "manifest_digest": DIGEST},
        "models": {"tiny": {"dir": "/srv/prefix/var/lib/gapseal/models/tiny"}},
        "variants": {},
        "files": [
            {"path": "/srv/prefix/var/lib/gapseal/models/tiny/w.bin", "digest": DIGEST, "size": 1, "component": "m"}
        ],
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_a_record_under_its_root_parses() -> None:
    assert parse_record(_record()).root == "/srv/prefix"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"files": [{"path": "/etc/shadow", "digest": DIGEST, "size": 1, "component": "m"}]}, "outside the install"),
        (
            {"files": [{"path": "/srv/prefix/../../etc/shadow", "digest": DIGEST, "size": 1, "component": "m"}]},
            "'..' component",
        ),
        ({"files": [{"path": "relative/x", "digest": DIGEST, "size": 1, "component": "m"}]}, "not an absolute path"),
        ({"models": {"../../etc": {"dir": "/srv/prefix/m"}}}, "'..' component"),
        ({"models": {"tiny": {"dir": "/opt/elsewhere"}}}, "outside the install"),
        ({"root": "relative"}, "must be an absolute path"),
    ],
    ids=[
        "file-outside-root",
        "file-dotdot",
        "file-relative",
        "model-name-dotdot",
        "model-dir-outside",
        "root-relative",
    ],
)
def test_record_refuses_paths_outside_its_root(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InstallError) as info:
        parse_record(_record(**changes))
    assert fragment in info.value.message


# ---------------------------------------------------------------------------------------------------------------
# apply and unpack write only under their scratch root
# ---------------------------------------------------------------------------------------------------------------


def test_apply_refuses_a_delta_directory_holding_a_link(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """A directory-form delta with a planted symlink is refused; the link's target is not read or written."""
    delta = tmp_path / "delta"
    shutil.copytree(bundle, delta)
    (delta / "blobs" / "sha256" / ("f" * 64)).symlink_to("/etc/passwd")
    result = gapseal("bundle", "apply", delta, "--base", bundle, "--out", tmp_path / "full", "--key", keys.public_path)
    refused(result, "symbolic link")
    assert not (tmp_path / "full").exists()


# ---------------------------------------------------------------------------------------------------------------
# Property: a trusted-signed descriptor with any file path either is refused, or extracts exactly the signed bytes
# at exactly the signed paths under --out
# ---------------------------------------------------------------------------------------------------------------

_PATH_ALPHABET = st.sampled_from(["a", "B", "0", ".", "..", "/", "\\", "\x00", "\n", "\x7f", "\u00e9", "e\u0301", "-"])


@functools.cache
def _property_bundle() -> tuple[Path, KeyPair]:
    root = Path(tempfile.mkdtemp(prefix="gapseal-paths-prop-"))
    atexit.register(shutil.rmtree, root, True)
    keys = make_keys(root / "keys")
    return make_bundle(root / "made", keys).path, keys


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(_PATH_ALPHABET, min_size=1, max_size=12))
def test_any_signed_path_is_refused_or_extracted_exactly_under_out(parts: list[str]) -> None:
    """Invariant: exit 0 only if what was written equals the signed content at the signed paths, all under --out;
    otherwise a GapsealError and nothing at --out."""
    base, keys = _property_bundle()
    work = Path(tempfile.mkdtemp(dir=base.parent))
    try:
        bundle = work / "bundle"
        shutil.copytree(base, bundle)
        desc = Layout(bundle).descriptor()
        desc["models"][0]["files"][0]["path"] = "".join(parts)
        resign(bundle, keys.private, desc)
        out = work / "out"
        try:
            verified = verify_bundle(bundle, [keys.public])
            files = component_files(verified, "model", "tiny")
            extract_component(verified, files, out)
        except GapsealError:
            assert not out.exists()
            return
        written = {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file()}
        assert sorted(written) == sorted(f.path for f in files)
        for f in files:
            path = written[f.path]
            assert Path(os.path.realpath(path)).is_relative_to(os.path.realpath(out))
            assert f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}" == f.digest
        outside = [
            p for p in work.rglob("*") if p.is_file() and not p.is_relative_to(bundle) and not p.is_relative_to(out)
        ]
        assert outside == []
    finally:
        shutil.rmtree(work)
