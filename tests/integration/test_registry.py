"""The on-site registry for real: Debian's docker-registry on loopback, skopeo, and a fault proxy in front.

docker-registry (distribution 2.8) has no referrers API, so the signature goes through the referrers tag schema;
the referrers-API path is exercised with the fault proxy answering that API (the proxy emulates it; nothing else
here is emulated).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler.create import CreatedBundle, create_bundle
from gapseal.bundler.registry import RegistryError, connect, fallback_tag, load_bundle, pull_bundle, push_verified
from gapseal.bundler.verify import verify_bundle
from gapseal.cli import main
from gapseal.errors import InputPathError, UsageError, VerificationError
from gapseal.progress import NO_PROGRESS
from tests.bundles import KeyPair, make_bundle, make_keys
from tests.registry.fixtures import proxy_fixture, registry_fixture  # noqa: F401 - pytest fixtures
from tests.registry.images import build_busybox, tool, write_image
from tests.registry.server import FaultProxy, LoopbackRegistry, free_port

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: gapseal/v1
kind: Bundle
metadata: {name: stack, version: 1.0.0, created: "2026-01-01T00:00:00Z"}
files:
  - {name: docs, path: docs}
images:
  - {name: app, source: "oci:src:v1"}
  - {name: busybox, source: "oci:src:bb"}
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> CreatedBundle:
    """One bundle for the module: a multi-arch image, a umoci-built busybox, and a file (never modified)."""
    root = tmp_path_factory.mktemp("stack")
    write_image(root / "in/src", "v1", ["linux/amd64", "linux/arm64/v8"])
    build_busybox(root / "in/src", "bb")
    (root / "in/docs").mkdir()
    (root / "in/docs/notes.txt").write_text("site notes\n")
    (root / "in/bundle.yaml").write_text(SPEC)
    return create_bundle(root / "in/bundle.yaml", keys.private, root / "bundle", link=False)


def _blob_count(bundle: CreatedBundle) -> int:
    """Blobs a load pushes as blobs (everything but the manifests and indexes)."""
    return len(_all_blob_digests(bundle))


def _tags(host: str, repo: str) -> list[str]:
    with urllib.request.urlopen(f"http://{host}/v2/{repo}/tags/list", timeout=10) as r:  # noqa: S310 - loopback
        return sorted(json.loads(r.read())["tags"] or [])


def _status(host: str, path: str) -> int:
    req = urllib.request.Request(f"http://{host}{path}", method="HEAD")  # noqa: S310 - loopback
    req.add_header("Accept", oci.MEDIA_MANIFEST)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_load_then_pull_gives_back_a_bundle_that_verifies(
    stack: CreatedBundle, keys: KeyPair, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    result = load_bundle(stack.path, [keys.public], registry.host, insecure=True)
    assert result.signature_mode == "tag-schema"  # distribution 2.8 has no referrers API
    assert result.bundle_reference == f"{registry.host}/gapseal/stack:1.0.0"
    assert len(result.blobs_sent) == _blob_count(stack)
    assert _tags(registry.host, "gapseal/stack") == sorted(["1.0.0", fallback_tag(stack.manifest_digest)])

    # The images are usable straight from the registry, with the digests they had at the source.
    for image in stack.descriptor.images or []:
        raw = subprocess.run(
            [tool("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{image.name}:1.0.0"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        assert oci.sha256_digest(raw) == image.digest

    pulled = pull_bundle(f"{registry.host}/gapseal/stack:1.0.0", tmp_path / "pulled", insecure=True)
    assert pulled.manifest_digest == stack.manifest_digest
    assert pulled.signature_mode == "tag-schema"
    verified = verify_bundle(tmp_path / "pulled", [keys.public])
    assert verified.manifest_digest == stack.manifest_digest
    assert (tmp_path / "pulled/index.json").read_bytes() == (stack.path / "index.json").read_bytes()
    ours = sorted(p.name for p in (stack.path / "blobs/sha256").iterdir())
    assert sorted(p.name for p in (tmp_path / "pulled/blobs/sha256").iterdir()) == ours


def test_second_load_sends_no_blob(stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy) -> None:
    first = load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    sent_first = proxy.state.upload_starts()
    assert sent_first == len(first.blobs_sent) == _blob_count(stack)
    again = load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    assert again.blobs_sent == []
    assert len(again.blobs_present) == _blob_count(stack)
    assert proxy.state.upload_starts() == sent_first  # HEAD only, not one upload more


def test_interrupted_load_resumes_sending_only_the_missing_blobs(
    stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy
) -> None:
    """The proxy refuses uploads after the third (as a dropped link would); the rerun sends only the rest."""
    total = _blob_count(stack)
    proxy.state.refuse_uploads_after = 3
    with pytest.raises(RegistryError, match=r"uploading blob sha256:[0-9a-f]{64} \(\d+ bytes\) to "):
        load_bundle(stack.path, [keys.public], proxy.host, insecure=True, concurrency=1)
    # Nothing looks complete: no image or bundle tag was written, only blobs.
    assert _status(proxy.state.upstream, "/v2/gapseal/stack/manifests/1.0.0") == 404
    assert _status(proxy.state.upstream, "/v2/app/manifests/1.0.0") == 404
    proxy.state.refuse_uploads_after = None
    before = proxy.state.upload_starts()
    resumed = load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    sent = proxy.state.upload_starts() - before
    assert sent == len(resumed.blobs_sent) == total - 3
    assert len(resumed.blobs_present) == 3


def test_signature_goes_through_the_referrers_api_when_the_registry_has_it(
    stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The proxy answers the OCI 1.1 referrers API (OCI-Subject header, /referrers/) in front of the real registry."""
    proxy.state.referrers_api = True
    result = load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    assert result.signature_mode == "referrers"
    assert _tags(proxy.state.upstream, "gapseal/stack") == ["1.0.0"]  # no tag-schema fallback tag
    assert list(proxy.state.referrers) == [stack.manifest_digest]
    pulled = pull_bundle(f"{proxy.host}/gapseal/stack:1.0.0", tmp_path / "pulled", insecure=True)
    assert pulled.signature_mode == "referrers"
    assert proxy.state.count("GET", r"/referrers/sha256:") >= 1
    verify_bundle(tmp_path / "pulled", [keys.public])


def test_corrupt_blob_from_the_registry_is_rejected_naming_it(
    stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy, tmp_path: Path
) -> None:
    load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    busybox = next(i for i in stack.descriptor.images or [] if i.name == "busybox")
    layer = busybox.manifests[0].layers[0].digest
    proxy.state.corrupt_blob = layer
    with pytest.raises(RegistryError, match=rf"returned blob {layer} of busybox with other content: it hashes to"):
        pull_bundle(f"{proxy.host}/gapseal/stack:1.0.0", tmp_path / "pulled", insecure=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry"]  # nothing half-written beside --out


def test_registry_not_running_is_refused_at_once(
    stack: CreatedBundle, keys: KeyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retry loop: a refused connection fails the first time (oras-py's own retry wrapper sleeps for minutes)."""

    def no_sleeping(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}s before giving up on a refused connection")

    monkeypatch.setattr(time, "sleep", no_sleeping)
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match=rf"cannot reach the registry at {host}: connection refused") as e:
        load_bundle(stack.path, [keys.public], host, insecure=True)
    assert "check --registry" in (e.value.hint or "")
    with pytest.raises(RegistryError, match="connection refused"):
        pull_bundle(f"{host}/gapseal/stack:1.0.0", tmp_path / "pulled", insecure=True)
    assert not (tmp_path / "pulled").exists()


def test_wrong_port_that_is_not_a_registry_is_refused(
    stack: CreatedBundle, keys: KeyPair, registry: LoopbackRegistry
) -> None:
    """A TLS client against the plain-HTTP registry: the registry refuses the handshake; named, with a hint."""
    with pytest.raises(RegistryError, match=f"TLS failed with {registry.host}") as e:
        load_bundle(stack.path, [keys.public], registry.host)
    assert "--insecure" in (e.value.hint or "")


def test_pull_of_an_unknown_bundle_says_not_found(registry: LoopbackRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"gapseal/nope:1\.0\.0: not found"):
        pull_bundle(f"{registry.host}/gapseal/nope:1.0.0", tmp_path / "pulled", insecure=True)
    assert not (tmp_path / "pulled").exists()


@pytest.mark.parametrize("reference", ["gapseal/stack:1.0.0", "127.0.0.1:5000/gapseal/stack", "127.0.0.1:5000/A:1"])
def test_malformed_references_are_usage_errors(reference: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a bundle reference"):
        pull_bundle(reference, tmp_path / "pulled")


def test_tampered_bundle_is_not_loaded_and_nothing_is_sent(
    stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(stack.path), str(copy)], check=True)  # noqa: S607 - coreutils
    busybox = next(i for i in stack.descriptor.images or [] if i.name == "busybox")
    layer = copy / oci.blob_path(busybox.manifests[0].layers[0].digest)
    data = layer.read_bytes()
    layer.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    with pytest.raises(VerificationError, match=r"image busybox layer 0 \(sha256:[0-9a-f]{64}\) is corrupt"):
        load_bundle(copy, [keys.public], proxy.host, insecure=True)
    assert proxy.state.requests == []


def test_cli_load_and_pull(
    stack: CreatedBundle,
    keys: KeyPair,
    registry: LoopbackRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["registry", "load", str(stack.path), "--registry", registry.host, "--insecure"]
    assert main([*args, "--key", str(keys.public_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["blobs_sent"] == _blob_count(stack)
    assert doc["signature"] == "tag-schema"
    ref = f"{registry.host}/gapseal/stack:1.0.0"
    assert main(["bundle", "pull", ref, "--out", str(tmp_path / "pulled"), "--insecure", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest_digest"] == stack.manifest_digest
    state = ["--state-file", str(tmp_path / "state.json")]
    assert main(["bundle", "verify", str(tmp_path / "pulled"), "--key", str(keys.public_path), *state, "-q"]) == 0
    dead = f"127.0.0.1:{free_port()}"
    assert (
        main(["registry", "load", str(stack.path), "--registry", dead, "--insecure", "--key", str(keys.public_path)])
        == 1
    )
    assert "connection refused" in capsys.readouterr().err


def test_image_from_a_registry_source_keeps_its_digest(
    stack: CreatedBundle, keys: KeyPair, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    """A docker:// source (the loopback registry, the only host named) is copied byte for byte."""
    load_bundle(stack.path, [keys.public], registry.host, insecure=True)
    app = next(i for i in stack.descriptor.images or [] if i.name == "app")
    (tmp_path / "in").mkdir()
    spec = tmp_path / "in/bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: remote, version: 2.0.0, created: "2026-01-01T00:00:00Z"}\n'
        f"images:\n  - {{name: app, source: 'docker://{registry.host}/app:1.0.0', insecure: true}}\n"
    )
    created = create_bundle(spec, keys.private, tmp_path / "b")
    image = (created.descriptor.images or [])[0]
    assert (image.digest, image.platforms) == (app.digest, app.platforms)
    verify_bundle(created.path, [keys.public])


def test_layer_shared_by_two_images_is_sent_once_and_mounted(keys: KeyPair, proxy: FaultProxy, tmp_path: Path) -> None:
    one = write_image(tmp_path / "in/src", "one", ["linux/amd64"], seed="same")
    write_image(tmp_path / "in/src", "two", ["linux/arm64/v8"], seed="same")
    spec = tmp_path / "in/bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: pair, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        "images:\n  - {name: one, source: 'oci:src:one'}\n  - {name: two, source: 'oci:src:two'}\n"
    )
    created = create_bundle(spec, keys.private, tmp_path / "b")
    result = load_bundle(created.path, [keys.public], proxy.host, insecure=True)
    assert result.blobs_mounted == [one.shared_layer]
    assert result.blobs_sent.count(one.shared_layer) == 1
    assert proxy.state.upload_starts() == len(result.blobs_sent) == _blob_count(created)
    for repo in ("one", "two"):
        assert _status(proxy.state.upstream, f"/v2/{repo}/blobs/{one.shared_layer}") == 200


def test_killed_load_resumes_sending_only_the_missing_blobs(
    stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy
) -> None:
    """A real interruption: the `gapseal registry load` process is killed (SIGKILL) mid-push over a slow link."""
    total = _blob_count(stack)
    proxy.state.upload_delay = 0.3
    cmd = [str(Path(sys.executable).parent / "gapseal"), "registry", "load", str(stack.path)]
    cmd += ["--registry", proxy.host, "--insecure", "--key", str(keys.public_path), "--concurrency", "1", "-q"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while proxy.state.count("PUT", r"/blobs/uploads/") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the load finished before it could be interrupted"
    finally:
        process.kill()
        process.wait(timeout=10)
    proxy.state.upload_delay = 0.0
    time.sleep(0.5)  # let the proxy forward what it already received
    present = [
        d
        for d in _all_blob_digests(stack)
        if _status(proxy.state.upstream, f"/v2/{_repo_of(stack, d)}/blobs/{d}") == 200
    ]
    assert 2 <= len(present) < total
    assert _status(proxy.state.upstream, "/v2/gapseal/stack/manifests/1.0.0") == 404
    before = proxy.state.upload_starts()
    resumed = load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    assert proxy.state.upload_starts() - before == len(resumed.blobs_sent) == total - len(present)
    assert sorted(resumed.blobs_present) == sorted(present)


def _all_blob_digests(bundle: CreatedBundle) -> list[str]:
    d = bundle.descriptor
    out = [m.config.digest for i in d.images or [] for m in i.manifests]
    out += [layer.digest for i in d.images or [] for m in i.manifests for layer in m.layers]
    out += [e.digest for _, e in d.layers()]
    index = json.loads((bundle.path / "index.json").read_bytes())
    sig = next(m for m in index["manifests"] if m.get("artifactType") == oci.ARTIFACT_SIGSTORE)
    sig_manifest = json.loads((bundle.path / oci.blob_path(sig["digest"])).read_bytes())
    out += [sig_manifest["config"]["digest"], sig_manifest["layers"][0]["digest"]]
    out.append(json.loads((bundle.path / oci.blob_path(bundle.manifest_digest)).read_bytes())["config"]["digest"])
    return sorted(set(out))


def _repo_of(bundle: CreatedBundle, digest: str) -> str:
    """The first repository a load pushes ``digest`` to (images first, then the bundle's)."""
    for image in bundle.descriptor.images or []:
        for m in image.manifests:
            if digest in {m.config.digest, *(layer.digest for layer in m.layers)}:
                return image.name
    return f"gapseal/{bundle.descriptor.name}"


def test_bundle_without_images_round_trips(keys: KeyPair, registry: LoopbackRegistry, tmp_path: Path) -> None:
    created = make_bundle(tmp_path / "plain", keys)
    result = load_bundle(created.path, [keys.public], registry.host, insecure=True)
    assert result.image_references == {}
    pull_bundle(f"{registry.host}/gapseal/clinic:1.0.0", tmp_path / "pulled", insecure=True)
    assert verify_bundle(tmp_path / "pulled", [keys.public]).manifest_digest == created.manifest_digest


def test_uploads_are_concurrent_within_the_bound(stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy) -> None:
    proxy.state.upload_delay = 0.1
    load_bundle(stack.path, [keys.public], proxy.host, insecure=True, concurrency=2)
    assert proxy.state.max_uploads_in_flight == 2


def test_large_blobs_go_up_in_one_streamed_put_and_come_back_intact(
    stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Every blob is one POST (upload session) and one PUT carrying the whole file; no PATCH round trips."""
    load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    assert proxy.state.count("PATCH", r"/blobs/uploads/") == 0
    assert proxy.state.count("PUT", r"/blobs/uploads/") == proxy.state.upload_starts() == _blob_count(stack)
    pull_bundle(f"{proxy.host}/gapseal/stack:1.0.0", tmp_path / "pulled", insecure=True)
    verify_bundle(tmp_path / "pulled", [keys.public])


def test_docker_manifest_list_from_a_registry_is_converted_and_filtered(
    keys: KeyPair, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    """A Docker v2 list (as Docker pushes) cannot sit readably in an OCI layout: converted to OCI, and recorded."""
    write_image(tmp_path / "src", "multi", ["linux/amd64", "linux/arm64/v8"])
    dest = f"docker://{registry.host}/dock:1"
    subprocess.run(
        [
            tool("skopeo"),
            "copy",
            "--quiet",
            "--all",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
            f"oci:{tmp_path}/src:multi",
            dest,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    raw = subprocess.run(
        [tool("skopeo"), "inspect", "--raw", "--tls-verify=false", dest], check=True, capture_output=True, timeout=60
    ).stdout
    (tmp_path / "in").mkdir()
    spec = tmp_path / "in/bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: dock, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        f"images:\n  - {{name: dock, source: '{dest}', insecure: true, platforms: [linux/arm64]}}\n"
    )
    created = create_bundle(spec, keys.private, tmp_path / "b")
    image = (created.descriptor.images or [])[0]
    assert image.converted_from == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert image.source_digest == oci.sha256_digest(raw)
    assert image.media_type == oci.MEDIA_INDEX
    assert image.platforms == ["linux/arm64/v8"]
    verify_bundle(created.path, [keys.public])
    copied = subprocess.run(
        [tool("skopeo"), "inspect", "--raw", f"oci:{created.path}:dock"], check=True, capture_output=True, timeout=60
    ).stdout
    assert oci.sha256_digest(copied) == image.digest


def test_corrupt_manifest_from_the_registry_is_rejected_naming_it(
    stack: CreatedBundle, keys: KeyPair, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The image index served for its digest is altered (one byte longer): refused before a byte past its signed size
    is read, and nothing is kept."""
    load_bundle(stack.path, [keys.public], proxy.host, insecure=True)
    app = next(i for i in stack.descriptor.images or [] if i.name == "app")
    proxy.state.corrupt_blob = app.digest
    with pytest.raises(
        RegistryError,
        match=rf"fetching manifest app@{app.digest}: the registry announces a manifest of {app.size + 1} bytes, more "
        rf"than the {app.size} allowed; nothing of it was read",
    ):
        pull_bundle(f"{proxy.host}/gapseal/stack:1.0.0", tmp_path / "pulled", insecure=True)
    assert not (tmp_path / "pulled").exists()


def test_load_wants_a_directory(stack: CreatedBundle, keys: KeyPair, tmp_path: Path) -> None:
    tar = tmp_path / "b.tar"
    tar.write_bytes(b"")
    with pytest.raises(InputPathError, match="is not a directory") as e:
        load_bundle(tar, [keys.public], "127.0.0.1:1", insecure=True)
    assert "gapseal bundle unpack" in (e.value.hint or "")


def test_bundle_altered_after_verification_is_not_pushed(
    stack: CreatedBundle, keys: KeyPair, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    """Between verify and push a file changes: the registry refuses the blob (digest), gapseal the manifest."""
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(stack.path), str(copy)], check=True)  # noqa: S607 - coreutils
    verified = verify_bundle(copy, [keys.public])
    client = connect(registry.host, insecure=True)
    docs = copy / oci.blob_path(stack.descriptor.files[0].files[0].digest)
    docs.write_bytes(b"swapped after verify\n")
    with pytest.raises(
        RegistryError, match=r"uploading blob sha256:[0-9a-f]{64} \(\d+ bytes\) to gapseal/stack: .*400"
    ):
        push_verified(verified, client, concurrency=2, progress=NO_PROGRESS)
    subprocess.run(
        ["cp", "-a", str(stack.path / oci.blob_path(stack.descriptor.files[0].files[0].digest)), str(docs)], check=True
    )  # noqa: S607
    app = next(i for i in stack.descriptor.images or [] if i.name == "app")
    index = copy / oci.blob_path(app.digest)
    index.write_bytes(index.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2', 1))
    with pytest.raises(RegistryError, match=f"the manifest {app.digest} changed on disk after the bundle was verified"):
        push_verified(verified, client, concurrency=2, progress=NO_PROGRESS)
    assert _status(registry.host, "/v2/app/manifests/1.0.0") == 404


def test_platform_filter_on_a_registry_source_fetches_only_the_kept_platforms(
    keys: KeyPair, proxy: FaultProxy, tmp_path: Path
) -> None:
    """From docker://, only the kept manifests and their blobs cross the wire; the stored index is the filtered one."""
    src = write_image(tmp_path / "in/src", "multi", ["linux/amd64", "linux/arm64/v8"])
    dest = f"docker://{proxy.state.upstream}/multi:1"
    subprocess.run(
        [tool("skopeo"), "copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
         f"oci:{tmp_path}/in/src:multi", dest],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    spec = tmp_path / "in/bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: one-arch, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        "images:\n"
        f"  - {{name: multi, source: 'docker://{proxy.host}/multi:1', insecure: true, platforms: [linux/amd64]}}\n"
        "  - {name: local, source: 'oci:src:multi', platforms: [linux/amd64]}\n"
    )
    created = create_bundle(spec, keys.private, tmp_path / "b")
    remote, local = created.descriptor.images or []
    assert (remote.digest, remote.source_digest) == (local.digest, src.digest)
    assert [m.digest for m in remote.manifests] == [src.manifests["linux/amd64"]]
    arm_only = src.layers["linux/arm64/v8"][1]
    assert proxy.state.count("GET", rf"/v2/multi/blobs/{src.layers['linux/amd64'][1]}") == 1
    assert proxy.state.count("GET", rf"/v2/multi/blobs/{arm_only}") == 0
    assert proxy.state.count("GET", rf"/v2/multi/manifests/{src.manifests['linux/arm64/v8']}") == 0
    verify_bundle(created.path, [keys.public])


def test_load_and_pull_over_ipv6_loopback(stack: CreatedBundle, keys: KeyPair, tmp_path: Path) -> None:
    """[::1]:PORT is the host named: its own (absolute, bracketed) Locations are the same host; a round trip."""
    registry = LoopbackRegistry(tmp_path / "registry6", address="[::1]")
    try:
        result = load_bundle(stack.path, [keys.public], registry.host, insecure=True)
        assert result.bundle_reference == f"{registry.host}/gapseal/stack:1.0.0"
        pulled = pull_bundle(
            f"{registry.host}/gapseal/stack:1.0.0", tmp_path / "pulled", insecure=True, trusted_keys=[keys.public]
        )
        assert pulled.verified_by == keys.public.key_id
        assert pulled.manifest_digest == stack.manifest_digest
    finally:
        registry.stop()
