"""The images role: a namespace host pulls the bundle's images by digest from the on-site registry into podman.

Real parts only: a busybox image built from scratch with umoci, a signed bundle holding it, Debian's docker-registry
listening on the controller side of the host's veth link (10.231.40.1, an address this test assigns), ``gapseal
registry load`` pushing into it, ``gapseal install`` running the playbook over ssh, and podman on the host pulling
``<registry>/<name>@<digest>``. Hosts 40-45 (10.231.40-45.0/24) belong to this module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapseal.bundler.create import create_bundle
from gapseal.cli import main
from gapseal.installer.record import load_record
from gapseal.signing.keys import SigningKey
from tests.fixtures.hardware.fakebin import install_fake_tools
from tests.hosts.netns import HostFleet, NamespaceHost
from tests.registry.images import BuiltImage, build_busybox, write_image
from tests.registry.server import LoopbackRegistry

pytestmark = pytest.mark.integration

HOST_INDEX = 40
PODMAN_ARGS = ["--events-backend", "file", "--cgroup-manager", "cgroupfs"]


@dataclass
class Env:
    work: Path
    bundle: Path
    pub: Path
    digest: str
    multi: BuiltImage
    """A two-platform image (an OCI index): the host keeps its own platform's image."""
    version: str
    host: NamespaceHost
    registry: LoopbackRegistry
    fleet: HostFleet
    runroot: Path

    def inventory(self, name: str, root: Path, **host_vars: Any) -> Path:
        base = {
            "gapseal_root": str(root),
            "egress_lockdown": False,
            "images_runroot": str(self.runroot / name),  # podman refuses a runroot longer than 50 characters
            "images_podman_args": PODMAN_ARGS,
        }
        doc = self.fleet.inventory([self.host], host_vars={self.host.name: {**base, **host_vars}})
        path = self.work / f"{name}.yml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def install(self, inventory: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        report = self.work / f"report-{time.monotonic_ns()}.json"
        args = ["install", str(self.bundle), "-i", str(inventory), "--key", str(self.pub), "--quiet"]
        args += ["--state-file", str(self.work / "state.json"), "--report", str(report), *extra]
        rc = main(args)
        return rc, json.loads(report.read_text()) if report.exists() else {}

    def podman(self, root: Path, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            "podman", "--root", str(root / "var/lib/containers/storage"), "--runroot", str(self.runroot / name),
            "--storage-driver", "vfs", *PODMAN_ARGS, *argv,
        ]  # fmt: skip
        return self.host.ssh(cmd, timeout=60)


@pytest.fixture(scope="module")
def env(host_fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = Path(tmp_path_factory.mktemp("install-images"))
    digest = build_busybox(work / "src" / "layout", "bb")
    multi = write_image(work / "src" / "layout", "multi", ["linux/amd64", "linux/arm64/v8"])
    spec = {
        "apiVersion": "gapseal/v1",
        "kind": "Bundle",
        "metadata": {"name": "images-site", "version": "2.1.0", "created": "2026-01-01T00:00:00Z"},
        "images": [{"name": "busybox", "source": "oci:layout:bb"}, {"name": "app", "source": "oci:layout:multi"}],
    }
    (work / "src" / "spec.yaml").write_text(yaml.safe_dump(spec))
    key = SigningKey.generate()
    pub = work / "signer.pub"
    pub.write_bytes(key.public.pem())
    create_bundle(work / "src" / "spec.yaml", key, work / "bundle")
    host = host_fleet.add(HOST_INDEX, extra_path=[install_fake_tools(work / "tools", "none")], own_mounts=True)
    registry = LoopbackRegistry(work / "registry", address=host.gateway, port=5000)
    runroot = Path(tempfile.mkdtemp(prefix="gs-img-", dir="/tmp"))  # noqa: S108 - private mkdtemp dir, short path
    try:
        load = ["registry", "load", str(work / "bundle"), "--registry", registry.host, "--insecure"]
        assert main([*load, "--key", str(pub), "--quiet"]) == 0
        yield Env(work, work / "bundle", pub, digest, multi, "2.1.0", host, registry, host_fleet, runroot)
    finally:
        registry.stop()
        shutil.rmtree(runroot, ignore_errors=True)


def _inspect(env: Env, root: Path, name: str, ref: str, fmt: str) -> str:
    inspected = env.podman(root, name, "image", "inspect", "--format", fmt, ref)
    assert inspected.returncode == 0, (ref, inspected.stderr)
    return inspected.stdout.strip()


def _digest(env: Env, root: Path, name: str, ref: str) -> str:
    return _inspect(env, root, name, ref, "{{.Digest}}")


def _host(doc: dict[str, Any]) -> dict[str, Any]:
    (host,) = doc["hosts"]
    return host  # type: ignore[no-any-return]


def test_host_pulls_the_image_by_digest_from_the_on_site_registry(env: Env) -> None:
    root = env.work / "roots" / "main"
    inv = env.inventory("main", root, images_registry=env.registry.host, images_insecure=True)
    # Check mode pulls nothing and does not even create podman's store.
    rc, doc = env.install(inv, "--check", "--tags", "images")
    assert rc == 0, json.dumps(doc, indent=2)
    assert not (root / "var/lib/containers/storage").exists()

    rc, doc = env.install(inv)
    assert rc == 0, json.dumps(doc, indent=2)
    assert any("Pull the missing images" in t for t in _host(doc)["changed_tasks"]), _host(doc)["changed_tasks"]
    pinned = f"{env.registry.host}/busybox@{env.digest}"
    pinned_app = f"{env.registry.host}/app@{env.multi.digest}"
    for ref in (pinned, pinned_app):
        exists = env.podman(root, "main", "image", "exists", ref)
        assert exists.returncode == 0, (ref, exists.stderr)
    assert _digest(env, root, "main", pinned) == env.digest
    # Of the two-platform index, the host keeps its own platform's image, known by the index's digest.
    assert _digest(env, root, "main", pinned_app) == env.multi.digest
    assert _inspect(env, root, "main", pinned_app, "{{.Architecture}}") == "amd64"
    record = load_record(root / "var/lib/gapseal/installed.json")
    assert [(i.name, i.digest, i.reference) for i in record.images] == [
        ("app", env.multi.digest, pinned_app),
        ("busybox", env.digest, pinned),
    ]

    # A second install pulls nothing and changes nothing.
    rc, doc = env.install(inv, "--tags", "images,record")
    assert rc == 0, json.dumps(doc, indent=2)
    assert (_host(doc)["changed"], _host(doc)["changed_tasks"]) == (0, [])


def test_without_a_registry_the_host_loads_the_images_from_the_bundle(env: Env) -> None:
    root = env.work / "roots" / "bundle"
    inv = env.inventory("bundle", root, images_from_bundle=True)
    rc, doc = env.install(inv, "--check", "--tags", "images")
    assert rc == 0, json.dumps(doc, indent=2)
    assert not (root / "var").exists()  # check mode: no layout, no store, no staging

    rc, doc = env.install(inv, "--tags", "images,record")
    assert rc == 0, json.dumps(doc, indent=2)
    assert any("Load each image" in t for t in _host(doc)["changed_tasks"]), _host(doc)["changed_tasks"]
    assert _digest(env, root, "bundle", "localhost/busybox:2.1.0") == env.digest
    assert _digest(env, root, "bundle", "localhost/app:2.1.0") == env.multi.digest
    assert _inspect(env, root, "bundle", "localhost/app:2.1.0", "{{.Architecture}}") == "amd64"
    names = env.podman(root, "bundle", "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(names.stdout.split()) == ["localhost/app:2.1.0", "localhost/busybox:2.1.0"], names.stderr
    record = load_record(root / "var/lib/gapseal/installed.json")
    assert [(i.name, i.digest, i.reference) for i in record.images] == [
        ("app", env.multi.digest, "localhost/app:2.1.0"),
        ("busybox", env.digest, "localhost/busybox:2.1.0"),
    ]

    rc, doc = env.install(inv, "--tags", "images,record")
    assert rc == 0, json.dumps(doc, indent=2)
    assert (_host(doc)["changed"], _host(doc)["changed_tasks"]) == (0, [])


def test_images_without_a_registry_fail_the_host_telling_what_to_do(env: Env) -> None:
    root = env.work / "roots" / "noreg"
    rc, doc = env.install(env.inventory("noreg", root), "--tags", "images")
    assert rc != 0
    host = _host(doc)
    assert host["status"] == "failed"
    (failure,) = host["failures"]
    assert "2 container image(s) (busybox, app)" in failure["message"]
    assert "images_registry is not set" in failure["message"]
    assert "gapseal registry load" in failure["message"]
    assert "images_from_bundle=true" in failure["message"]
    assert not (root / "var/lib/containers/storage").exists()


def test_a_registry_without_the_image_fails_naming_the_pinned_reference(env: Env) -> None:
    empty = LoopbackRegistry(env.work / "empty-registry", address=env.host.gateway, port=5001)
    try:
        root = env.work / "roots" / "empty"
        inv = env.inventory("empty", root, images_registry=empty.host, images_insecure=True)
        rc, doc = env.install(inv, "--tags", "images")
    finally:
        empty.stop()
    assert rc != 0
    host = _host(doc)
    assert host["status"] == "failed"
    (failure,) = host["failures"]
    assert failure["message"].startswith(f"cannot pull from the on-site registry {empty.host}: ")
    assert f"{empty.host}/busybox@{env.digest}: " in failure["message"]
    assert "manifest unknown" in failure["message"]
