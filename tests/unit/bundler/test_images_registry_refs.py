"""Registry addresses and bundle references are checked before any connection (and never resolved by DNS)."""

from __future__ import annotations

import pytest

from gapseal.bundler.registry import bundle_repository, fallback_tag, parse_reference, parse_registry
from gapseal.errors import UsageError


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("127.0.0.1:5000/gapseal/clinic:1.0.0", ("127.0.0.1:5000", "gapseal/clinic", "1.0.0")),
        ("localhost/gapseal/clinic:2.0.0rc1", ("localhost", "gapseal/clinic", "2.0.0rc1")),
        ("registry.site.internal:443/gapseal/a-b:1", ("registry.site.internal:443", "gapseal/a-b", "1")),
        ("[::1]:5000/gapseal/x:1", ("[::1]:5000", "gapseal/x", "1")),
    ],
)
def test_references_split_into_host_repository_and_tag(reference: str, expected: tuple[str, str, str]) -> None:
    assert parse_reference(reference) == expected


@pytest.mark.parametrize(
    "reference",
    [
        "gapseal/clinic:1.0.0",  # no registry host: would be a DNS name 'gapseal'
        "127.0.0.1:5000/gapseal/clinic",  # no tag
        "127.0.0.1:5000/Gapseal/clinic:1",  # upper case repository
        "127.0.0.1:5000/:1",
        "127.0.0.1:5000/gapseal/clinic:",
        "http://127.0.0.1:5000/gapseal/clinic:1",
        "127.0.0.1:5000/gapseal/clinic@sha256:" + "a" * 64,
    ],
)
def test_malformed_references_are_refused(reference: str) -> None:
    with pytest.raises(UsageError, match="is not a bundle reference"):
        parse_reference(reference)


@pytest.mark.parametrize("value", ["registry", "127.0.0.1:5000/x", "http://127.0.0.1:5000", "", "a b:1"])
def test_malformed_registry_addresses_are_refused(value: str) -> None:
    with pytest.raises(UsageError, match="is not a registry address"):
        parse_registry(value)


def test_tag_schema_and_repository_names() -> None:
    assert fallback_tag("sha256:" + "0f" * 32) == "sha256-" + "0f" * 32
    assert bundle_repository("clinic") == "gapseal/clinic"
