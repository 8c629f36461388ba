"""Images from a verified bundle are usable as they are: skopeo copies them, podman loads and runs them.

The image is real: Debian's static busybox put into an image from scratch by umoci. Sources in every file form
(oci layout, oci-archive, docker-archive) are made by skopeo from it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import CreatedBundle, create_bundle
from gapseal.bundler.images import ImageSourceError
from gapseal.bundler.verify import verify_bundle
from gapseal.cli import main
from tests.bundles import KeyPair, make_keys
from tests.registry.images import build_busybox, tool, write_image

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: gapseal/v1
kind: Bundle
metadata: {name: images, version: 1.0.0, created: "2026-01-01T00:00:00Z"}
images:
  - {name: busybox, source: "oci:src:bb"}
  - {name: from-oci-archive, source: "oci-archive:bb-oci.tar"}
  - {name: from-docker-archive, source: "docker-archive:bb-docker.tar"}
  - {name: app, source: "oci:src:multi"}
"""


def _skopeo(*args: str) -> bytes:
    return subprocess.run([tool("skopeo"), *args], capture_output=True, check=True, timeout=120).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The inputs directory with every source form; returns it and busybox's manifest digest."""
    root = tmp_path_factory.mktemp("inputs")
    digest = build_busybox(root / "src", "bb")
    write_image(root / "src", "multi", ["linux/amd64", "linux/arm64/v8"])
    _skopeo("copy", "--quiet", "--preserve-digests", f"oci:{root}/src:bb", f"oci-archive:{root}/bb-oci.tar:bb")
    _skopeo("copy", "--quiet", f"oci:{root}/src:bb", f"docker-archive:{root}/bb-docker.tar:busybox:1")
    (root / "bundle.yaml").write_text(SPEC)
    return root, digest


@pytest.fixture(scope="module")
def bundle(sources: tuple[Path, str], keys: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> CreatedBundle:
    root, _ = sources
    return create_bundle(root / "bundle.yaml", keys.private, tmp_path_factory.mktemp("out") / "bundle", link=False)


def test_every_source_form_verifies_and_keeps_its_digest(
    bundle: CreatedBundle, sources: tuple[Path, str], keys: KeyPair
) -> None:
    _, busybox_digest = sources
    images = {i.name: i for i in bundle.descriptor.images or []}
    assert images["busybox"].digest == busybox_digest
    assert images["from-oci-archive"].digest == busybox_digest  # the archive carried the same manifest
    # A docker-archive has a Docker v2 manifest, which an OCI layout cannot list readably: converted, and said so.
    docker = images["from-docker-archive"]
    assert docker.media_type == oci.MEDIA_MANIFEST
    assert docker.converted_from == "application/vnd.docker.distribution.manifest.v2+json"
    docker_raw = _skopeo("inspect", "--raw", f"docker-archive:{sources[0]}/bb-docker.tar")
    assert docker.source_digest == oci.sha256_digest(docker_raw) != docker.digest
    assert images["app"].platforms == ["linux/amd64", "linux/arm64/v8"]
    # busybox and its oci-archive copy share every blob: stored once.
    stored = {p.name for p in (bundle.path / "blobs/sha256").iterdir()}
    assert images["busybox"].manifests[0].layers[0].digest.removeprefix("sha256:") in stored
    verify_bundle(bundle.path, [keys.public])


def test_skopeo_copies_images_out_of_the_verified_bundle(bundle: CreatedBundle, tmp_path: Path) -> None:
    for image in bundle.descriptor.images or []:
        raw = _skopeo("inspect", "--raw", f"oci:{bundle.path}:{image.name}")
        assert oci.sha256_digest(raw) == image.digest
        _skopeo(
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            f"oci:{bundle.path}:{image.name}",
            f"oci:{tmp_path}/out:{image.name}",
        )
    index = json.loads((tmp_path / "out/index.json").read_bytes())
    got = {m["annotations"][oci.ANNOTATION_REF_NAME]: m["digest"] for m in index["manifests"]}
    assert got == {i.name: i.digest for i in bundle.descriptor.images or []}


@pytest.fixture
def runroot() -> Iterator[Path]:
    """podman refuses a runroot path longer than 50 characters: a short one under /tmp, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="gs-run-", dir="/tmp"))  # noqa: S108 - private mkdtemp dir
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_podman_loads_and_runs_the_image_from_the_bundle(bundle: CreatedBundle, tmp_path: Path, runroot: Path) -> None:
    podman = [
        tool("podman"),
        "--root", str(tmp_path / "root"),
        "--runroot", str(runroot),
        "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "file",
        "--runtime", "runc",
    ]  # fmt: skip
    busybox = next(i for i in bundle.descriptor.images or [] if i.name == "busybox")
    pulled = subprocess.run(
        [*podman, "pull", "--quiet", f"oci:{bundle.path}:busybox"], capture_output=True, text=True, timeout=120
    )
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == busybox.manifests[0].config.digest.removeprefix("sha256:")
    run = subprocess.run(
        [*podman, "run", "--rm", "--network", "none", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
         pulled.stdout.strip(), "echo", "hello from the bundle"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from the bundle"


def test_packed_bundle_with_images_verifies_as_a_tar(bundle: CreatedBundle, keys: KeyPair, tmp_path: Path) -> None:
    packed = pack_layout(bundle.path, tmp_path / "b.gapseal.tar", mtime=0)
    verified = verify_bundle(packed.out, [keys.public])
    assert verified.manifest_digest == bundle.manifest_digest


def test_cli_create_with_images_and_verify(sources: tuple[Path, str], keys: KeyPair, tmp_path: Path) -> None:
    root, _ = sources
    out = tmp_path / "cli-bundle"
    assert (
        main(["bundle", "create", str(root / "bundle.yaml"), "--key", str(keys.private_path), "--out", str(out), "-q"])
        == 0
    )
    state = ["--state-file", str(tmp_path / "state.json")]
    assert main(["bundle", "verify", str(out), "--key", str(keys.public_path), *state, "-q"]) == 0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("oci-archive:bb-oci.tar:nope", "cannot read oci-archive:bb-oci.tar:nope"),
        ("oci:src:missing-tag", "cannot read oci:src:missing-tag"),
        ("docker-archive:bundle.yaml", "cannot read docker-archive:bundle.yaml"),
        ("docker://127.0.0.1:9/nothing:1", "cannot read docker://127.0.0.1:9/nothing:1"),
    ],
)
def test_unreadable_sources_are_refused_naming_them(
    sources: tuple[Path, str], keys: KeyPair, tmp_path: Path, source: str, message: str
) -> None:
    root, _ = sources
    spec = root / f"bad-{abs(hash(source))}.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: bad, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        f"images:\n  - {{name: app, source: '{source}'"
        + (", insecure: true" if source.startswith("docker://") else "")
        + "}\n"
    )
    with pytest.raises(ImageSourceError, match=f"image 'app': {message}"):
        create_bundle(spec, keys.private, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_inspect_lists_every_image_with_digest_and_platforms(bundle: CreatedBundle, keys: KeyPair) -> None:
    from gapseal.bundler.inspect import inspect_bundle

    info = inspect_bundle(bundle.path, [keys.public]).as_dict()
    listed = {i["name"]: i for i in info["images"]}  # type: ignore[attr-defined]
    assert set(listed) == {i.name for i in bundle.descriptor.images or []}
    assert listed["app"]["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert listed["busybox"]["digest"].startswith("sha256:")
    assert listed["busybox"]["bytes"] > 0
