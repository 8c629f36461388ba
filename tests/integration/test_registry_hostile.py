"""A hostile registry against `bundle pull`, `bundle inventory HOST:PORT/…` and `registry load` (issue 13).

Every case runs the CLI as a user would, against tests/registry/hostile.py: a small HTTP server in front of the real
docker-registry that rewrites answers per test. Each asserts the exit code and the message; the cases of class 1
(one host) also assert that a second loopback listener, the "other host", saw no connection at all.

Classes: 1 one host, 2 what was asked for (and pull's verification), 3 bounded reads, 4 deadlines and retries,
5 load proves what it did, 6 clear errors. Deadline cases use --timeout 1 and a small declared size, so they end in
a few seconds; no test asserts a duration.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler.create import CreatedBundle, create_bundle
from gapseal.bundler.registry import connect, fallback_tag, load_bundle
from gapseal.cli import main
from tests.bundles import KeyPair, make_keys
from tests.registry.hostile import Forward, HostileRegistry, Listener, Reply, Req, Rule
from tests.registry.images import write_image
from tests.registry.server import LoopbackRegistry

pytestmark = pytest.mark.integration

SPEC = """\
apiVersion: gapseal/v1
kind: Bundle
metadata: {{name: {name}, version: {version}, created: "2026-01-01T00:00:00Z"}}
files:
  - {{name: docs, path: docs}}
images:
  - {{name: one, source: "oci:src:one"}}
  - {{name: two, source: "oci:src:two"}}
"""


@dataclass
class World:
    """Keys, bundles (stack 0.9.0, 1.0.0, 2.0.0) and a registry holding all three."""

    keys: KeyPair
    stranger: KeyPair
    bundles: dict[str, CreatedBundle]
    registry: LoopbackRegistry
    root: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("hostile")
    keys = make_keys(root / "keys")
    stranger = make_keys(root / "stranger")
    inputs = root / "in"
    write_image(inputs / "src", "one", ["linux/amd64", "linux/arm64/v8"], seed="same")
    write_image(inputs / "src", "two", ["linux/amd64"], seed="same")  # shares a layer with "one"
    (inputs / "docs").mkdir()
    (inputs / "docs/notes.txt").write_text("site notes\n" * 100)
    bundles = {}
    for version in ("0.9.0", "1.0.0", "2.0.0"):
        spec = inputs / f"bundle-{version}.yaml"
        spec.write_text(SPEC.format(name="stack", version=version))
        bundles[version] = create_bundle(spec, keys.private, root / f"bundle-{version}", link=False)
    registry = LoopbackRegistry(root / "registry")
    try:
        for b in bundles.values():
            load_bundle(b.path, [keys.public], registry.host, insecure=True)
        yield World(keys, stranger, bundles, registry, root)
    finally:
        registry.stop()


@pytest.fixture
def hostile(world: World) -> Iterator[HostileRegistry]:
    h = HostileRegistry(world.registry.host)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def other() -> Iterator[Listener]:
    """The other host: must never see a connection."""
    listener = Listener()
    try:
        yield listener
    finally:
        listener.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[HostileRegistry]:
    """A hostile registry in front of an empty registry (for loads that must upload)."""
    registry = LoopbackRegistry(tmp_path / "fresh-registry")
    h = HostileRegistry(registry.host)
    try:
        yield h
    finally:
        h.stop()
        registry.stop()


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollback state under the test's directory, never the user's."""
    monkeypatch.setenv("GAPSEAL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("GAPSEAL_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("GAPSEAL_REGISTRY_PASSWORD", raising=False)


@dataclass
class Run:
    code: int
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    capsys.readouterr()
    code = main(list(args))
    got = capsys.readouterr()
    assert "Traceback" not in got.err
    return Run(code, got.out, got.err)


def pull(
    capsys: pytest.CaptureFixture[str], host: str, out: Path, *extra: str, ref: str = "gapseal/stack:1.0.0"
) -> Run:
    return cli(capsys, "bundle", "pull", f"{host}/{ref}", "--insecure", "--out", str(out), "-q", *extra)


def inventory(capsys: pytest.CaptureFixture[str], host: str, out: Path, *extra: str) -> Run:
    return cli(capsys, "bundle", "inventory", f"{host}/gapseal/stack:1.0.0", "--insecure", "--out", str(out), *extra)


def load(capsys: pytest.CaptureFixture[str], world: World, host: str, *extra: str, version: str = "1.0.0") -> Run:
    b = world.bundles[version].path
    key = str(world.keys.public_path)
    return cli(capsys, "registry", "load", str(b), "--registry", host, "--insecure", "--key", key, "-q", *extra)


def answer(reply: Reply) -> Rule:
    """A rule that answers every matching request with ``reply``."""

    def rule(_req: Req, _fwd: Forward) -> Reply:
        return reply

    return rule


def redirect(status: int, location: str) -> Rule:
    return answer(Reply(status, {"Location": location}))


def digest_of(world: World, version: str = "1.0.0") -> str:
    return world.bundles[version].manifest_digest


def layer_of(world: World) -> tuple[str, int]:
    """The docs file blob of stack 1.0.0: (digest, size)."""
    entry = world.bundles["1.0.0"].descriptor.files[0].files[0]
    return entry.digest, entry.size


# ---------------------------------------------------------------------------------------------------------------
# Class 1: one host
# ---------------------------------------------------------------------------------------------------------------

REDIRECTS = [
    ("manifest-301", "GET", r"/manifests/1\.0\.0$", 301),
    ("manifest-302", "GET", r"/manifests/1\.0\.0$", 302),
    ("blob-307", "GET", r"/blobs/sha256:", 307),
    ("blob-308", "GET", r"/blobs/sha256:", 308),
    ("tag-schema-302", "GET", r"/manifests/sha256-", 302),
    ("signature-manifest-301", "GET", r"/manifests/sha256:", 301),
    ("ping-302", "GET", r"^/v2/$", 302),
]


@pytest.mark.parametrize(("case", "method", "pattern", "status"), REDIRECTS, ids=[r[0] for r in REDIRECTS])
def test_pull_refuses_a_redirect_to_another_host(
    case: str,
    method: str,
    pattern: str,
    status: int,
    hostile: HostileRegistry,
    other: Listener,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hostile.on(method, pattern, redirect(status, f"http://{other.host}/v2/elsewhere"))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert f"redirect ({status}) pointing at another host, http://{other.host}; refused" in run.err
    assert f"http://{hostile.host}" in run.err
    assert f"--allow-host {other.host}" in run.err
    assert other.connections == 0
    assert not (tmp_path / "out").exists()


def test_pull_refuses_a_redirect_to_another_scheme_on_the_same_host_and_port(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/blobs/sha256:", redirect(302, f"https://{hostile.host}/v2/x"))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert f"pointing at another host, https://{hostile.host}; refused" in run.err
    assert len(hostile.seen("GET", r"^/v2/x")) == 0


def test_pull_refuses_a_redirect_to_something_that_is_no_http_url(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/blobs/sha256:", redirect(302, "file:///etc/passwd"))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "sent a redirect (302) that is no http(s) URL: 'file:///etc/passwd'; refused" in run.err


def test_pull_follows_a_relative_redirect_on_the_same_host(
    hostile: HostileRegistry, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same-host relative locations keep working: the blob is served from a path the registry names."""
    digest, _ = layer_of(world)

    def moved(req: Req, fwd: Forward) -> Reply | None:
        if req.path.endswith(digest):
            return Reply(307, {"Location": f"/v2/gapseal/stack/blobs/{digest}?moved=1"})
        return None

    hostile.on("GET", r"/blobs/sha256:[0-9a-f]{64}$", moved)
    run = pull(capsys, hostile.host, tmp_path / "out", "--key", str(world.keys.public_path))
    assert run.code == 0, run.err
    assert len(hostile.seen("GET", r"\?moved=1$")) == 1


def test_pull_refuses_more_than_five_redirects(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/blobs/sha256:", redirect(302, "/v2/gapseal/stack/blobs/sha256:loop"))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "more than 5 redirects; refused" in run.err


def _bearer(realm: str) -> Rule:
    return answer(Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg",scope="repository:x:pull"'}))


@pytest.mark.parametrize("where", ["ping", "manifest", "blob"])
def test_pull_refuses_a_token_realm_on_another_host(
    where: str, hostile: HostileRegistry, other: Listener, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pattern = {"ping": r"^/v2/$", "manifest": r"/manifests/1\.0\.0$", "blob": r"/blobs/sha256:"}[where]
    hostile.on("GET", pattern, _bearer(f"http://{other.host}/token"))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert f"sent a token realm pointing at another host, http://{other.host}; refused" in run.err
    assert other.connections == 0


def test_inventory_refuses_a_redirect_to_another_host(
    hostile: HostileRegistry, other: Listener, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/blobs/sha256:", redirect(307, f"http://{other.host}/b"))
    run = inventory(capsys, hostile.host, tmp_path / "have.json")
    assert run.code == 1
    assert f"pointing at another host, http://{other.host}; refused" in run.err
    assert other.connections == 0
    assert not (tmp_path / "have.json").exists()


def test_inventory_refuses_a_token_realm_on_another_host(
    hostile: HostileRegistry, other: Listener, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/manifests/", _bearer(f"http://{other.host}/token"))
    run = inventory(capsys, hostile.host, tmp_path / "have.json")
    assert run.code == 1
    assert "token realm pointing at another host" in run.err
    assert other.connections == 0


def _location_elsewhere(target: str) -> Rule:
    def rule(req: Req, fwd: Forward) -> Reply:
        reply = fwd(req)
        if reply.status == 202 and "Location" in reply.headers:
            path = reply.headers["Location"].split("/v2/", 1)[1]
            reply.headers["Location"] = f"{target}/v2/{path}"
        return reply

    return rule


@pytest.mark.parametrize("target", ["other-port", "other-address"])
def test_load_never_sends_a_blob_to_an_upload_location_on_another_host(
    target: str,
    world: World,
    fresh: HostileRegistry,
    other: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The attack that sent every blob elsewhere: the upload Location names another host."""
    host = other.host if target == "other-port" else "127.0.0.2:9"
    fresh.on("POST", r"/blobs/uploads/", _location_elsewhere(f"http://{host}"))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert f"sent a upload Location pointing at another host, http://{host}; refused" in run.err
    assert other.connections == 0
    assert fresh.seen("PUT", r"/blobs/uploads/") == []


def test_load_refuses_a_redirect_of_a_blob_check_to_another_host(
    world: World, fresh: HostileRegistry, other: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh.on("HEAD", r"/blobs/sha256:", redirect(307, f"http://{other.host}/v2/x"))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert f"pointing at another host, http://{other.host}; refused" in run.err
    assert other.connections == 0


def test_load_refuses_a_token_realm_on_another_host(
    world: World, fresh: HostileRegistry, other: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh.on("POST", r"/blobs/uploads/", _bearer(f"http://{other.host}/token"))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert "token realm pointing at another host" in run.err
    assert other.connections == 0


def test_load_refuses_a_redirect_of_a_manifest_put(
    world: World, fresh: HostileRegistry, other: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write is never redirected, not even on the same host."""
    fresh.on("PUT", r"/manifests/", redirect(307, f"http://{fresh.host}/v2/one/manifests/x"))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert "the registry answered 307 to a PUT; refused" in run.err
    assert other.connections == 0


def test_load_refuses_a_mount_answered_with_an_upload_location_on_another_host(
    world: World, fresh: HostileRegistry, other: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shared layer of images one and two is mounted; the mount is answered with a Location elsewhere."""
    fresh.on("POST", r"from=", answer(Reply(202, {"Location": f"http://{other.host}/v2/two/blobs/uploads/u"})))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert f"sent a upload Location pointing at another host, http://{other.host}; refused" in run.err
    assert other.connections == 0


def test_load_follows_a_relative_upload_location(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    def relative(req: Req, fwd: Forward) -> Reply:
        reply = fwd(req)
        if "Location" in reply.headers:
            reply.headers["Location"] = "/v2/" + reply.headers["Location"].split("/v2/", 1)[1]
        return reply

    fresh.on("POST", r"/blobs/uploads/", relative)
    run = load(capsys, world, fresh.host)
    assert run.code == 0, run.err
    assert fresh.seen("PUT", r"^/v2/.*/blobs/uploads/")


def test_an_allowed_host_is_used_but_never_gets_the_credentials(
    world: World,
    hostile: HostileRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--allow-host lets blobs come from the registry's storage host; the credentials go to the named host only."""
    monkeypatch.setenv("GAPSEAL_REGISTRY_USERNAME", "site")
    monkeypatch.setenv("GAPSEAL_REGISTRY_PASSWORD", "s3cret")
    storage = HostileRegistry(world.registry.host)
    try:

        def basic_required(req: Req, fwd: Forward) -> Reply | None:
            if not req.headers.get("authorization", "").startswith("Basic "):
                return Reply(401, {"WWW-Authenticate": 'Basic realm="site"'})
            return None

        hostile.on(None, r"^/v2/", basic_required)
        hostile.on(
            "GET", r"/blobs/sha256:", lambda req, fwd: Reply(307, {"Location": f"http://{storage.host}{req.path}"})
        )
        refused = pull(capsys, hostile.host, tmp_path / "refused")
        assert refused.code == 1
        assert f"--allow-host {storage.host}" in refused.err
        assert storage.seen() == []
        run = pull(
            capsys, hostile.host, tmp_path / "out", "--allow-host", storage.host, "--key", str(world.keys.public_path)
        )
        assert run.code == 0, run.err
        assert storage.seen("GET", r"/blobs/")
        assert all("authorization" not in r.headers for r in storage.seen())
        assert all(r.headers.get("authorization", "").startswith("Basic ") for r in hostile.seen("GET", r"/blobs/"))
    finally:
        storage.stop()


def test_load_to_an_allowed_upload_host_sends_blobs_there_without_the_credentials(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry hands uploads to its storage front (another port, allowed by name): the bytes go there, the
    Authorization header does not."""
    monkeypatch.setenv("GAPSEAL_REGISTRY_USERNAME", "site")
    monkeypatch.setenv("GAPSEAL_REGISTRY_PASSWORD", "s3cret")
    storage = HostileRegistry(fresh.upstream)  # the same registry behind another port
    try:

        def basic_required(req: Req, fwd: Forward) -> Reply | None:
            if not req.headers.get("authorization", "").startswith("Basic "):
                return Reply(401, {"WWW-Authenticate": 'Basic realm="site"'})
            return None

        fresh.on(None, r"^/v2/", basic_required)
        fresh.on("POST", r"/blobs/uploads/", _location_elsewhere(f"http://{storage.host}"))
        refused = load(capsys, world, fresh.host)
        assert refused.code == 1
        assert f"--allow-host {storage.host}" in refused.err
        assert storage.seen() == []
        run = load(capsys, world, fresh.host, "--allow-host", storage.host)
        assert run.code == 0, run.err
        assert storage.seen("PUT", r"/blobs/uploads/")  # the blobs went to the storage host
        assert all("authorization" not in r.headers for r in storage.seen())
        manifests = fresh.seen("PUT", r"/manifests/")
        assert manifests
        assert all(r.headers["authorization"].startswith("Basic ") for r in manifests if "authorization" in r.headers)
    finally:
        storage.stop()


def test_a_bearer_token_from_the_same_host_works_and_goes_nowhere_else(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def token_required(req: Req, fwd: Forward) -> Reply | None:
        if req.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, b'{"token":"t0k"}')
        if req.headers.get("authorization") != "Bearer t0k":
            realm = f"http://{hostile.host}/token"
            return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg",scope="repository:x:pull"'})
        return None

    hostile.on(None, r"", token_required)
    run = pull(capsys, hostile.host, tmp_path / "out", "--key", str(world.keys.public_path))
    assert run.code == 0, run.err
    assert hostile.seen("GET", r"^/token\?service=reg&scope=repository%3Ax%3Apull$")


def test_a_token_service_on_an_allowed_host_is_used_without_the_credentials(
    world: World,
    hostile: HostileRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GAPSEAL_REGISTRY_USERNAME", "site")
    monkeypatch.setenv("GAPSEAL_REGISTRY_PASSWORD", "s3cret")
    tokens = HostileRegistry("127.0.0.1:1")  # answers /token itself, forwards nothing
    try:
        tokens.on(
            "GET", r"^/token", lambda req, fwd: Reply(200, {"Content-Type": "application/json"}, b'{"token":"t"}')
        )

        def token_required(req: Req, fwd: Forward) -> Reply | None:
            if req.headers.get("authorization") != "Bearer t":
                realm = f"http://{tokens.host}/token"
                return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'})
            return None

        hostile.on(None, r"^/v2/", token_required)
        refused = pull(capsys, hostile.host, tmp_path / "refused")
        assert refused.code == 1
        assert f"sent a token realm pointing at another host, http://{tokens.host}; refused" in refused.err
        assert tokens.seen() == []
        run = pull(capsys, hostile.host, tmp_path / "out", "--allow-host", tokens.host)
        assert run.code == 0, run.err
        assert tokens.seen("GET", r"^/token\?service=reg$")
        assert all("authorization" not in r.headers for r in tokens.seen())
    finally:
        tokens.stop()


def test_a_registry_asking_for_credentials_without_any_says_which_variables_to_set(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on(None, r"^/v2/", answer(Reply(401, {"WWW-Authenticate": 'Basic realm="site"'})))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "the registry asks for credentials" in run.err
    assert "GAPSEAL_REGISTRY_USERNAME and GAPSEAL_REGISTRY_PASSWORD" in run.err


# ---------------------------------------------------------------------------------------------------------------
# Class 2: what was asked for, and what pull verifies
# ---------------------------------------------------------------------------------------------------------------


def _serve_tag_as(world: World, version: str) -> Rule:
    """The 1.0.0 tag answered with the (genuinely signed) manifest of another version."""

    def rule(req: Req, fwd: Forward) -> Reply:
        return fwd(Req(req.method, req.path.replace("/manifests/1.0.0", f"/manifests/{version}"), req.headers, b""))

    return rule


@pytest.mark.parametrize("served", ["2.0.0", "0.9.0"])
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_pull_refuses_a_signed_bundle_of_another_version_than_the_tag(
    served: str,
    with_key: bool,
    world: World,
    hostile: HostileRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hostile.on("GET", r"/manifests/1\.0\.0$", _serve_tag_as(world, served))
    extra = ("--key", str(world.keys.public_path)) if with_key else ()
    run = pull(capsys, hostile.host, tmp_path / "out", *extra)
    assert run.code == 1
    label = "signed" if with_key else "labelled"
    assert f"is {label} as bundle stack {served}, not the stack 1.0.0 asked for; refused" in run.err
    assert not (tmp_path / "out").exists()
    assert hostile.seen("GET", r"/blobs/" + layer_of(world)[0]) == []  # refused before the files


def test_pull_refuses_a_bundle_of_another_name_than_the_repository(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gapseal/other:1.0.0 is answered with everything of gapseal/stack (a genuine, signed bundle)."""

    def alias(req: Req, fwd: Forward) -> Reply:
        return fwd(Req(req.method, req.path.replace("/v2/gapseal/other/", "/v2/gapseal/stack/"), req.headers, b""))

    hostile.on(None, r"^/v2/gapseal/other/", alias)
    run = pull(capsys, hostile.host, tmp_path / "out", "--key", str(world.keys.public_path), ref="gapseal/other:1.0.0")
    assert run.code == 1
    assert "is signed as bundle stack 1.0.0, not the other 1.0.0 asked for; refused" in run.err


def test_inventory_refuses_another_version_than_the_tag(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/manifests/1\.0\.0$", _serve_tag_as(world, "2.0.0"))
    run = inventory(capsys, hostile.host, tmp_path / "have.json")
    assert run.code == 1
    assert "as bundle stack 2.0.0, not the stack 1.0.0 asked for; refused" in run.err
    assert not (tmp_path / "have.json").exists()


def test_inventory_with_a_key_verifies_the_registry_bundle(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = inventory(capsys, hostile.host, tmp_path / "no.json", "--key", str(world.stranger.public_path))
    assert refused.code == 1
    assert "no signature by a trusted key names this bundle manifest" in refused.err
    assert not (tmp_path / "no.json").exists()
    run = inventory(capsys, hostile.host, tmp_path / "have.json", "--key", str(world.keys.public_path), "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["bundles"][0]["manifest_digest"] == digest_of(world)


def test_pull_with_a_key_verifies_and_says_so_and_never_moves_the_mark(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "rollback.json"
    run = pull(
        capsys,
        hostile.host,
        tmp_path / "out",
        "--key",
        str(world.keys.public_path),
        "--state-file",
        str(state),
        "--json",
    )
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["verified"] is True
    assert doc["signer_key_id"] == world.keys.public.key_id
    assert doc["manifest_digest"] == digest_of(world)
    assert not state.exists()  # checked, never recorded: pull does not use the bundle
    assert main(["bundle", "verify", str(tmp_path / "out"), "--key", str(world.keys.public_path), "-q"]) == 0


def test_pull_without_a_key_says_plainly_that_nothing_is_verified(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = cli(
        capsys, "bundle", "pull", f"{hostile.host}/gapseal/stack:1.0.0", "--insecure", "--out", str(tmp_path / "o")
    )
    assert run.code == 0
    assert "NOT verified: no --key given" in run.out
    assert "(trusted)" not in run.out


def test_pull_with_an_untrusted_key_writes_nothing(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = pull(capsys, hostile.host, tmp_path / "out", "--key", str(world.stranger.public_path))
    assert run.code == 1
    assert "no signature by a trusted key names this bundle manifest" in run.err
    assert not (tmp_path / "out").exists()
    assert hostile.seen("GET", r"/blobs/" + layer_of(world)[0]) == []  # nothing sized by an unsigned manifest


def test_pull_checks_rollback_and_allows_a_downgrade_only_when_asked(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "rollback.json"
    key = str(world.keys.public_path)
    assert load(capsys, world, hostile.host, "--state-file", str(state), version="2.0.0").code == 0
    recorded = state.read_bytes()
    run = pull(capsys, hostile.host, tmp_path / "old", "--key", key, "--state-file", str(state))
    assert run.code == 1
    assert "rollback refused: stack 1.0.0 is older than 2.0.0" in run.err
    assert not (tmp_path / "old").exists()
    run = pull(capsys, hostile.host, tmp_path / "old", "--key", key, "--state-file", str(state), "--allow-downgrade")
    assert run.code == 0, run.err
    assert state.read_bytes() == recorded


def test_load_checks_rollback_before_sending_anything_and_records_what_it_loaded(
    world: World, fresh: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "rollback.json"
    assert load(capsys, world, fresh.host, "--state-file", str(state), version="2.0.0").code == 0
    assert json.loads(state.read_text())["stack"]["version"] == "2.0.0"
    before = len(fresh.seen())
    run = load(capsys, world, fresh.host, "--state-file", str(state))
    assert run.code == 1
    assert "rollback refused: stack 1.0.0 is older than 2.0.0" in run.err
    assert len(fresh.seen()) == before
    assert load(capsys, world, fresh.host, "--state-file", str(state), "--allow-downgrade").code == 0


def test_pull_refuses_a_signature_of_another_manifest(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tag schema index of 1.0.0 answered with the one of 2.0.0 (a genuine signature, of another bundle)."""
    theirs = fallback_tag(digest_of(world, "2.0.0"))

    def swap(req: Req, fwd: Forward) -> Reply:
        return fwd(Req(req.method, f"/v2/gapseal/stack/manifests/{theirs}", req.headers, b""))

    hostile.on("GET", r"/manifests/sha256-", swap)
    run = pull(capsys, hostile.host, tmp_path / "out", "--key", str(world.keys.public_path))
    assert run.code == 1
    assert "is not a signature of" in run.err


def test_pull_refuses_a_bundle_without_a_signature(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/manifests/sha256-", answer(Reply(404)))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "has no signature on" in run.err


# ---------------------------------------------------------------------------------------------------------------
# Class 3: bounded reads
# ---------------------------------------------------------------------------------------------------------------

HUGE = 300 * 1000 * 1000


def _endless_json() -> Iterator[bytes]:
    block = b'{"schemaVersion":2,' + b" " * (1024 * 1024)
    for _ in range(HUGE // len(block)):
        yield block


def test_pull_refuses_a_300_mb_manifest_announced_by_its_length_without_reading_it(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on(
        "GET", r"/manifests/1\.0\.0$", answer(Reply(200, {"Content-Type": oci.MEDIA_MANIFEST}, b"{", length=HUGE))
    )
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert f"announces a manifest of {HUGE} bytes, more than the 4194304 allowed; nothing of it was read" in run.err


def test_pull_stops_reading_a_300_mb_manifest_sent_without_a_length_at_the_cap(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on(
        "GET", r"/manifests/1\.0\.0$", answer(Reply(200, {"Content-Type": oci.MEDIA_MANIFEST}, stream=_endless_json))
    )
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "sent a manifest of more than 4194304 bytes; stopped reading there" in run.err
    assert hostile.sent_body_bytes < HUGE // 10  # the registry could not push the rest down the connection


def _blob_reply(world: World, change: str) -> Rule:
    digest, size = layer_of(world)

    def rule(req: Req, fwd: Forward) -> Reply | None:
        if not req.path.endswith(digest):
            return None
        reply = fwd(req)
        if change == "longer-announced":
            reply.body += b"x" * 10
        elif change == "longer-chunked":
            data = reply.body + b"x" * 10
            reply.stream = lambda: iter([data])
        elif change == "altered":
            reply.body = bytes([reply.body[0] ^ 1]) + reply.body[1:]
        elif change == "cut":
            reply.cut_after = size // 2
        elif change == "shorter-announced":
            reply.body = reply.body[:-1]
        return reply

    return rule


BLOB_CASES = [
    ("longer-announced", "announced as {over} bytes, not {size}; nothing of it was read"),
    ("shorter-announced", "announced as {under} bytes, not {size}"),
    ("longer-chunked", "with other content: over {size} bytes"),
    ("altered", "with other content: it hashes to sha256:"),
    ("cut", "the registry closed the connection after {half} of {size} bytes"),
]


@pytest.mark.parametrize(("change", "message"), BLOB_CASES, ids=[c[0] for c in BLOB_CASES])
def test_pull_never_reads_a_blob_past_its_signed_size_and_refuses_other_content(
    change: str,
    message: str,
    world: World,
    hostile: HostileRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digest, size = layer_of(world)
    hostile.on("GET", r"/blobs/sha256:", _blob_reply(world, change))
    run = pull(capsys, hostile.host, tmp_path / "out", "--key", str(world.keys.public_path))
    assert run.code == 1
    assert message.format(size=size, over=size + 10, under=size - 1, half=size // 2) in run.err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.pulling-*"))


def _referrers_index(entries: list[dict[str, object]]) -> Rule:
    body = json.dumps({"schemaVersion": 2, "mediaType": oci.MEDIA_INDEX, "manifests": entries}).encode()
    return answer(Reply(200, {"Content-Type": oci.MEDIA_INDEX}, body))


def _sig_entry(world: World, n: int = 0) -> dict[str, object]:
    index = json.loads((world.bundles["1.0.0"].path / "index.json").read_bytes())
    sig = next(m for m in index["manifests"] if m.get("artifactType") == oci.ARTIFACT_SIGSTORE)
    return {**sig, "digest": sig["digest"] if n == 0 else "sha256:" + f"{n:064x}"}


def test_pull_caps_the_number_of_signatures_at_what_a_bundle_may_carry(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/manifests/sha256-", _referrers_index([_sig_entry(world, n) for n in range(9)]))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "the registry lists 9 signatures; a bundle carries at most 8" in run.err


def test_pull_caps_the_number_of_referrers(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    others = [{**_sig_entry(world, n), "artifactType": "application/spdx+json"} for n in range(1, 66)]
    hostile.on("GET", r"/manifests/sha256-", _referrers_index([_sig_entry(world), *others]))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "the registry lists 66 referrers; gapseal reads at most 64" in run.err


def test_pull_refuses_a_referrer_listed_twice(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = _sig_entry(world)
    hostile.on("GET", r"/manifests/sha256-", _referrers_index([entry, entry]))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert f"lists referrer {entry['digest']} more than once; refused" in run.err


def test_pull_caps_the_referrers_index(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on(
        "GET", r"/manifests/sha256-", answer(Reply(200, {"Content-Type": oci.MEDIA_INDEX}, stream=_endless_json))
    )
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "sent a referrers index of more than 262144 bytes" in run.err


def test_pull_caps_the_signature_read_before_it_is_verified(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signature manifest (unsigned itself) claims a 100 MB Sigstore bundle: refused before the blob is read."""
    entry = _sig_entry(world)

    doc = json.loads((world.bundles["1.0.0"].path / oci.blob_path(str(entry["digest"]))).read_bytes())
    doc["layers"][0]["size"] = 100_000_000
    data = json.dumps(doc).encode()
    new_digest = oci.sha256_digest(data)
    hostile.on("GET", r"/manifests/sha256-", _referrers_index([{**entry, "digest": new_digest, "size": len(data)}]))
    hostile.on("GET", rf"/manifests/{new_digest}$", answer(Reply(200, {"Content-Type": oci.MEDIA_MANIFEST}, data)))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "gives its Sigstore bundle 100000000 bytes, more than the 16777216 read before verification" in run.err


def test_pull_checks_the_signature_before_reading_blobs_the_manifest_sizes(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest whose file sizes were inflated is not the signed one: no file blob is requested at all."""

    def inflated(req: Req, fwd: Forward) -> Reply:
        reply = fwd(req)
        doc = json.loads(reply.body)
        for layer in doc["layers"]:
            layer["size"] *= 1000
        reply.body = json.dumps(doc).encode()
        return reply

    hostile.on("GET", r"/manifests/1\.0\.0$", inflated)
    hostile.on("GET", r"/manifests/sha256-", _referrers_index([{**_sig_entry(world)}]))
    run = pull(capsys, hostile.host, tmp_path / "out", "--key", str(world.keys.public_path))
    assert run.code == 1
    assert "is not a signature of" in run.err
    assert hostile.seen("GET", r"/blobs/") == []


def test_pull_without_a_key_caps_every_blob_at_max_blob_size(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest, size = layer_of(world)
    run = pull(capsys, hostile.host, tmp_path / "out", "--max-blob-size", "100")
    assert run.code == 1
    assert "more than the 100 read from an unverified bundle; refused" in run.err
    assert hostile.seen("GET", rf"/blobs/{digest}") == []


def test_an_endless_error_body_is_read_only_up_to_its_cap(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/manifests/1\.0\.0$", answer(Reply(500, {"Content-Type": "text/plain"}, stream=_endless_json)))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "the registry answered 500 Internal Server Error" in run.err
    assert hostile.sent_body_bytes < HUGE // 10


def test_an_endless_token_is_refused(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def token(req: Req, fwd: Forward) -> Reply:
        if req.path.startswith("/token"):
            return Reply(200, {"Content-Type": "application/json"}, stream=_endless_json)
        return Reply(401, {"WWW-Authenticate": f'Bearer realm="http://{hostile.host}/token",service="r"'})

    hostile.on(None, r"", token)
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert "sent a token of more than 65536 bytes" in run.err


def test_load_refuses_a_blob_the_registry_claims_with_another_size(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh.on("HEAD", r"/blobs/sha256:", answer(Reply(200, {"Docker-Content-Digest": "sha256:" + "0" * 64}, length=7)))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert "the registry claims to hold it but answers with size 7 and digest sha256:000" in run.err


# ---------------------------------------------------------------------------------------------------------------
# Class 4: deadlines and retries
# ---------------------------------------------------------------------------------------------------------------


def _manifest_bytes(world: World) -> bytes:
    return (world.bundles["1.0.0"].path / oci.blob_path(digest_of(world))).read_bytes()


@pytest.mark.parametrize(
    ("case", "reply", "message"),
    [
        ("body-drip", {"drip": 0.3}, "is too slow: the request's deadline"),
        ("header-drip", {"header_drip": 0.3}, "is too slow: the request's deadline"),
        ("stall-before-answer", {"hang": 30}, "stalled: nothing for 1 s"),
        ("stall-before-body", {"stall_body": 30}, "stalled: nothing for 1 s"),
    ],
)
def test_a_slow_or_stalled_registry_fails_in_bounded_time(
    case: str,
    reply: dict[str, float],
    message: str,
    world: World,
    hostile: HostileRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--timeout 1: a stall fails after 1 s of silence; a drip (never silent for 1 s) fails at the deadline.

    The deadline is 1 s plus the declared size at 1 MiB/s (here: the 4 MiB manifest cap, about 5 s).
    """
    served = Reply(200, {"Content-Type": oci.MEDIA_MANIFEST}, _manifest_bytes(world))
    for name, value in reply.items():
        setattr(served, name, value)
    hostile.on("GET", r"/manifests/1\.0\.0$", answer(served))
    run = pull(capsys, hostile.host, tmp_path / "out", "--timeout", "1")
    assert run.code == 1
    assert message in run.err
    assert "--timeout" in run.err


def test_a_dripping_blob_fails_at_its_deadline(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest, _ = layer_of(world)

    def drip(req: Req, fwd: Forward) -> Reply:
        reply = fwd(req)
        reply.drip = 0.5
        return reply

    hostile.on("GET", rf"/blobs/{digest}$", drip)
    run = pull(capsys, hostile.host, tmp_path / "out", "--timeout", "1", "--key", str(world.keys.public_path))
    assert run.code == 1
    assert f"fetching blob {digest} from gapseal/stack: the registry at {hostile.host} is too slow" in run.err


def test_reads_are_retried_a_bounded_number_of_times(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/manifests/1\.0\.0$", answer(Reply(503)), times=2)
    assert pull(capsys, hostile.host, tmp_path / "out").code == 0
    assert len(hostile.seen("GET", r"/manifests/1\.0\.0$")) == 3
    hostile.on("GET", r"/manifests/1\.0\.0$", answer(Reply(503)))
    run = pull(capsys, hostile.host, tmp_path / "again")
    assert run.code == 1
    assert "the registry answered 503 Service Unavailable" in run.err
    assert len(hostile.seen("GET", r"/manifests/1\.0\.0$")) == 6  # 3 more: one try and two retries


def test_a_reset_connection_on_a_read_is_retried(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", r"/manifests/1\.0\.0$", answer(Reply(200, raw=b"")), times=1)
    assert pull(capsys, hostile.host, tmp_path / "out").code == 0
    assert len(hostile.seen("GET", r"/manifests/1\.0\.0$")) == 2


@pytest.mark.parametrize(("method", "pattern"), [("POST", r"/blobs/uploads/"), ("PUT", r"/manifests/")])
def test_writes_are_never_retried(
    method: str, pattern: str, world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh.on(method, pattern, answer(Reply(503)))
    run = load(capsys, world, fresh.host, "--concurrency", "1")
    assert run.code == 1
    assert "the registry answered 503 Service Unavailable" in run.err
    assert len(fresh.seen(method, pattern)) == 1


# ---------------------------------------------------------------------------------------------------------------
# Class 5: load proves what it did
# ---------------------------------------------------------------------------------------------------------------


def test_load_catches_a_registry_that_swallows_a_manifest(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = digest_of(world)
    fresh.on("PUT", rf"/manifests/{digest}$", answer(Reply(201, {"Docker-Content-Digest": digest})))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert f"fetching manifest gapseal/stack@{digest}: not found" in run.err


def test_load_catches_a_registry_that_swallows_the_signature_index(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh.on("PUT", r"/manifests/sha256-", answer(Reply(201)))
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert "the registry does not list it (neither the referrers API nor the sha256-" in run.err
    assert fresh.seen("PUT", r"/manifests/1\.0\.0$") == []  # no tag names an unproven bundle


def test_load_catches_a_registry_that_claims_blobs_it_does_not_have(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """HEAD says yes (right size and digest), so nothing is sent; the registry then refuses the manifests."""

    def claim(req: Req, fwd: Forward) -> Reply:
        digest = req.path.rsplit("/", 1)[1]
        size = next((p.stat().st_size for p in (world.bundles["1.0.0"].path / "blobs/sha256").glob(digest[7:])), 0)
        return Reply(200, {"Docker-Content-Digest": digest}, length=size)

    fresh.on("HEAD", r"/blobs/sha256:", claim)
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert "pushing manifest" in run.err
    assert "MANIFEST_BLOB_UNKNOWN" in run.err


def test_load_catches_a_manifest_read_back_altered(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = digest_of(world)

    def altered(req: Req, fwd: Forward) -> Reply:
        reply = fwd(req)
        reply.body = reply.body.replace(b'"schemaVersion":2', b'"schemaVersion":3', 1)
        return reply

    fresh.on("GET", rf"/manifests/{digest}$", altered)
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert f"manifest that does not match its digest: gapseal/stack@{digest}" in run.err


def test_load_catches_a_tag_that_reads_back_as_another_manifest(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    two = next(i for i in world.bundles["1.0.0"].descriptor.images or [] if i.name == "two")

    def other_image(req: Req, fwd: Forward) -> Reply:
        return fwd(Req("GET", f"/v2/two/manifests/{two.digest}", req.headers, b""))

    fresh.on("GET", r"^/v2/one/manifests/1\.0\.0$", other_image)
    run = load(capsys, world, fresh.host)
    assert run.code == 1
    assert "reading back one:1.0.0: the registry names sha256:" in run.err


def test_load_mounts_a_blob_another_repository_holds_and_checks_present_ones_by_head(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    images = {i.name: i for i in world.bundles["1.0.0"].descriptor.images or []}
    shared = {b.digest for m in images["one"].manifests for b in [m.config, *m.layers]} & {
        b.digest for m in images["two"].manifests for b in [m.config, *m.layers]
    }
    assert len(shared) == 3  # two's amd64 manifest is one's: config, own layer and the layer all platforms share
    run = load(capsys, world, fresh.host, "--json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["blobs_mounted"] == len(shared)  # sent to one, mounted into two
    assert len(fresh.seen("POST", r"from=one")) == len(shared)
    assert all(f"mount={d.replace(':', '%3A')}" in " ".join(r.path for r in fresh.seen("POST")) for d in shared)
    assert doc["manifests_checked"] >= 6
    uploads = len(fresh.seen("POST", r"/blobs/uploads/"))
    assert uploads == doc["blobs_sent"] + doc["blobs_mounted"]
    again = load(capsys, world, fresh.host, "--json")
    assert json.loads(again.out)["blobs_sent"] == 0
    assert len(fresh.seen("POST", r"/blobs/uploads/")) == uploads  # HEAD found every blob: no upload, no mount
    assert len(fresh.seen("HEAD", r"/blobs/")) >= 2 * doc["blobs_sent"]


def test_load_mounts_a_blob_the_registry_finds_in_a_repository_of_an_earlier_load(
    world: World, fresh: HostileRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """The docs file is already in repository "elsewhere"; the registry finds it when asked to mount it without a
    source (OCI 1.1 lets `from` be left out; distribution 2.8 lacks that, so the hostile server emulates it by adding
    from=elsewhere, and the real registry performs the mount). It is mounted, not sent."""
    digest, size = layer_of(world)
    data = (world.bundles["1.0.0"].path / oci.blob_path(digest)).read_bytes()
    seed = connect(fresh.host, insecure=True)
    assert seed.upload("elsewhere", digest, size, data, mount_from=None) is False
    seed.http.close()

    def discover(req: Req, fwd: Forward) -> Reply:
        return fwd(Req(req.method, f"{req.path}&from=elsewhere", req.headers, req.body))

    fresh.on("POST", rf"\?mount={digest.replace(':', '%3A')}$", discover)
    run = load(capsys, world, fresh.host, "--json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["blobs_mounted"] == 3 + 1  # the three blobs two shares with one, and the docs file
    sent = fresh.seen("PUT", r"^/v2/gapseal/stack/blobs/uploads/")
    assert sent
    assert not [r for r in sent if digest.replace(":", "%3A") in r.path]


# ---------------------------------------------------------------------------------------------------------------
# Class 6: clear errors, never a traceback
# ---------------------------------------------------------------------------------------------------------------


def test_pull_over_a_dangling_symlink_with_overwrite_replaces_the_link(
    world: World, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "nowhere")
    refused = pull(capsys, hostile.host, out)
    assert refused.code == 2
    assert "already exists" in refused.err
    run = pull(capsys, hostile.host, out, "--overwrite", "--key", str(world.keys.public_path))
    assert run.code == 0, run.err
    assert out.is_dir()
    assert not out.is_symlink()
    assert not (tmp_path / "nowhere").exists()


def test_inventory_over_a_dangling_symlink_with_overwrite_replaces_the_link(
    hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "have.json"
    out.symlink_to(tmp_path / "nowhere")
    assert inventory(capsys, hostile.host, out).code == 2
    run = inventory(capsys, hostile.host, out, "--overwrite")
    assert run.code == 0, run.err
    assert out.is_file()
    assert not out.is_symlink()
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("pattern", "raw", "message"),
    [
        (r"^/v2/$", b"", "the registry closed the connection"),
        (r"^/v2/$", b"SSH-2.0-OpenSSH_9.2\r\n", "the answer is not HTTP"),
        (r"/manifests/1\.0\.0$", b"HTTP/1.1 200 OK\r\nContent-Length: banana\r\n\r\n{}", "malformed Content-Length"),
    ],
    ids=["closes", "not-http", "bad-length"],
)
def test_a_peer_that_does_not_speak_http_is_named_plainly(
    pattern: str, raw: bytes, message: str, hostile: HostileRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.on("GET", pattern, answer(Reply(200, raw=raw)))
    run = pull(capsys, hostile.host, tmp_path / "out")
    assert run.code == 1
    assert message in run.err


@pytest.mark.parametrize(
    "args",
    [
        ["bundle", "pull", "127.0.0.1:5000/gapseal/x", "--out", "o"],
        ["bundle", "pull", "127.0.0.1:5000/gapseal/x:1", "--out", "o", "--allow-host", "not a host"],
    ],
    ids=["no-tag", "bad-allow-host"],
)
def test_usage_errors_exit_2_before_any_connection(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundle.tar").write_bytes(b"")
    shutil.copy(make_keys(tmp_path / "k").public_path, tmp_path / "k.pub")
    run = cli(capsys, *args)
    assert run.code == 2, run.err
    assert "error" in run.err.lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bundle", "pull", "127.0.0.1:5000/gapseal/x:1", "--out", "no/such/dir/o"],
            "directory no/such/dir does not exist",
        ),
        (["registry", "load", "bundle.tar", "--registry", "127.0.0.1:5000", "--key", "k.pub"], "is not a directory"),
    ],
    ids=["no-parent", "load-a-tar"],
)
def test_bad_paths_exit_1_naming_them_before_any_connection(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No registry listens on 127.0.0.1:5000 here; reaching it would fail differently."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bundle.tar").write_bytes(b"")
    shutil.copy(make_keys(tmp_path / "k").public_path, tmp_path / "k.pub")
    run = cli(capsys, *args)
    assert run.code == 1
    assert message in run.err
