"""The registry transport's rules in isolation: origins, the allow list, caps, deadlines, kept connections.

The peer is tests/registry/hostile.py answering every request by itself (no registry behind it), on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.bundler.registry.distribution import CHUNK, Distribution
from gapseal.bundler.registry.reference import allowed_origins, registry_origin
from gapseal.bundler.registry.transport import (
    DEFAULT_TIMEOUT,
    Limits,
    Origin,
    RegistryError,
    RegistryHTTP,
    origin_of,
    parse_hostport,
)
from gapseal.bundler.tarformat import ALIGNED_BUFFER
from gapseal.errors import UsageError
from tests.registry.hostile import Forward, HostileRegistry, Reply, Req


@pytest.fixture
def peer() -> Iterator[HostileRegistry]:
    h = HostileRegistry("127.0.0.1:1")  # nothing is forwarded: every test answers what it asks
    try:
        yield h
    finally:
        h.stop()


def client(peer: HostileRegistry, **kw: object) -> RegistryHTTP:
    return RegistryHTTP(Origin("http", "127.0.0.1", peer.port), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:5000/v2/", Origin("http", "127.0.0.1", 5000)),
        ("https://Registry.Site/v2/x", Origin("https", "registry.site", 443)),
        ("http://[::1]:5000/v2/", Origin("http", "[::1]", 5000)),
        ("http://registry.site/v2/", Origin("http", "registry.site", 80)),
        ("ftp://registry.site/x", None),
        ("/v2/relative", None),
        ("http://127.0.0.1:99999/", None),
    ],
)
def test_origin_of_a_url_is_scheme_host_and_port(url: str, origin: Origin | None) -> None:
    assert origin_of(url) == origin


def test_the_named_registry_is_https_unless_insecure() -> None:
    assert registry_origin("127.0.0.1:5000", insecure=False) == Origin("https", "127.0.0.1", 5000)
    assert registry_origin("127.0.0.1:5000", insecure=True) == Origin("http", "127.0.0.1", 5000)
    assert parse_hostport("[::1]:5000", scheme="http") == Origin("http", "[::1]", 5000)


def test_allowed_hosts_take_the_named_scheme_unless_they_give_one() -> None:
    allowed = allowed_origins(["storage.site:9000", "https://tokens.site:443"], insecure=True)
    assert allowed == {Origin("http", "storage.site", 9000), Origin("https", "tokens.site", 443)}


@pytest.mark.parametrize("value", ["not a host", "storage", "http://", "a/b:1"])
def test_a_malformed_allowed_host_is_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        allowed_origins([value], insecure=True)


def test_another_origin_is_refused_naming_both_and_the_option() -> None:
    http = RegistryHTTP(Origin("http", "127.0.0.1", 5000), allowed=frozenset({Origin("http", "127.0.0.1", 9000)}))
    assert http.check_origin("http://127.0.0.1:9000/x", "w", "redirect (302)") == Origin("http", "127.0.0.1", 9000)
    with pytest.raises(RegistryError) as e:
        http.check_origin("http://127.0.0.1:9001/x", "fetching x", "redirect (302)")
    assert (
        "http://127.0.0.1:5000 sent a redirect (302) pointing at another host, http://127.0.0.1:9001" in e.value.message
    )
    assert e.value.hint is not None
    assert "--allow-host 127.0.0.1:9001" in e.value.hint
    with pytest.raises(RegistryError, match="another host, https://127.0.0.1:5000"):
        http.check_origin("https://127.0.0.1:5000/x", "fetching x", "redirect (302)")


def test_a_stall_fails_well_under_a_minute_by_default() -> None:
    assert DEFAULT_TIMEOUT == Limits().timeout == 20.0
    assert Limits().deadline(64 * 1024) < 30  # a small request (a manifest's error body) ends within half a minute


def test_the_deadline_grows_with_the_declared_size() -> None:
    limits = Limits(timeout=2.0, min_rate=1000.0)
    assert limits.deadline(0) == 2.0
    assert limits.deadline(5000) == 7.0


def _always(reply: Reply) -> object:
    def rule(_req: Req, _fwd: Forward) -> Reply:
        return reply

    return rule


def test_a_kept_connection_serves_the_next_request_heads_of_large_blobs_included(peer: HostileRegistry) -> None:
    peer.on("HEAD", r"", _always(Reply(200, length=10**12)))  # type: ignore[arg-type]
    peer.on("GET", r"", _always(Reply(200, body=b"{}")))  # type: ignore[arg-type]
    http = client(peer)
    for _ in range(3):
        r = http.request("HEAD", "/v2/x/blobs/sha256:" + "0" * 64, what="head")
        r.drain()
        assert r.content_length() == 10**12
        assert http.request("GET", "/v2/", what="get").read_capped(10) == b"{}"
    assert len(http._all) == 1  # one connection for all six requests
    http.close()


def test_a_plain_http_registry_never_loads_the_ca_store(peer: HostileRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TLS context (reading the system's CA certificates: tens of ms) is made for the first https connection."""

    def no_tls(*args: object, **kwargs: object) -> None:
        raise AssertionError("a TLS context was made for a plain-HTTP registry")

    monkeypatch.setattr("ssl.create_default_context", no_tls)
    peer.on("GET", r"", _always(Reply(200, body=b"{}")))  # type: ignore[arg-type]
    http = RegistryHTTP(Origin("http", "127.0.0.1", peer.port), tls_verify=False)
    assert http.request("GET", "/v2/", what="get").read_capped(10) == b"{}"
    http.close()


def test_a_body_over_the_cap_is_refused_while_reading(peer: HostileRegistry) -> None:
    peer.on("GET", r"", _always(Reply(200, stream=lambda: iter([b"x" * 1000] * 1000))))  # type: ignore[arg-type]
    http = client(peer)
    with pytest.raises(RegistryError, match="sent a manifest of more than 5000 bytes; stopped reading there"):
        http.request("GET", "/v2/", what="get").read_capped(5000, noun="manifest")
    http.close()


def test_a_header_drip_fails_at_the_deadline_not_never(peer: HostileRegistry) -> None:
    """A byte every 0.2 s never trips the 1 s read timeout; the watchdog ends it at 1 s + 64 KiB at 1 MiB/s."""
    peer.on("GET", r"", _always(Reply(200, headers={"X-Pad": "y" * 200}, header_drip=0.2)))  # type: ignore[arg-type]
    http = client(peer, limits=Limits(timeout=1.0))
    with pytest.raises(RegistryError, match="too slow: the request's deadline"):
        http.request("GET", "/v2/", what="get").read_capped(10)
    http.close()


@pytest.mark.parametrize("size", [0, 100, ALIGNED_BUFFER + 7, CHUNK, 2 * CHUNK + 4096, 3 * CHUNK + 1234])
def test_a_fetched_blob_is_exactly_the_bytes_hashed_whatever_its_size(
    peer: HostileRegistry, tmp_path: Path, size: int
) -> None:
    """Whole chunks of a large blob go to the disk with O_DIRECT, the rest through the page cache: same bytes."""
    data = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    peer.on("GET", r"/blobs/", _always(Reply(200, body=data)))  # type: ignore[arg-type]
    registry = Distribution(client(peer))
    got = registry.fetch_blob("x", digest, size, tmp_path / "blob")
    assert (got.size, "sha256:" + got.sha256) == (size, digest)
    assert (tmp_path / "blob").read_bytes() == data
    registry.http.close()


def test_a_large_blob_altered_in_its_last_chunk_is_refused_and_removed(peer: HostileRegistry, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 1234)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    altered = data[:-1] + bytes([data[-1] ^ 1])
    peer.on("GET", r"/blobs/", _always(Reply(200, body=altered)))  # type: ignore[arg-type]
    registry = Distribution(client(peer))
    with pytest.raises(RegistryError, match="with other content: it hashes to sha256:"):
        registry.fetch_blob("x", digest, len(data), tmp_path / "blob")
    assert not (tmp_path / "blob").exists()
    registry.http.close()
