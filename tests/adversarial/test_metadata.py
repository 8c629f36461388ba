"""Signed metadata is validated before use: times, version and name, re-signed with the trusted key.

A trusted-signed bundle with a naive or nonsense date, a created far in the future, or a version the rollback check
cannot compare is refused by verify (exit 1, the field named), before the rollback state is read or written. The
rollback semantics are checked through the commands: looking never moves the mark, using does; the same version is
always usable again; an older one needs --allow-downgrade.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gapseal.bundler.descriptor import format_time
from tests.adversarial.conftest import Gapseal, refused
from tests.adversarial.forge import Layout, resign
from tests.bundles import KeyPair, make_bundle

NOW = datetime.now(UTC)


def _set(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d[field] = value

    return edit


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "created-naive": (_set("created", "2026-01-01T00:00:00"), ("created:", "with a time zone")),
    "created-date-only": (_set("created", "2026-01-01"), ("created:", "not an RFC 3339 date-time")),
    "created-nonsense": (_set("created", "yesterday"), ("created: 'yesterday'",)),
    "created-impossible-day": (_set("created", "2026-02-30T00:00:00Z"), ("created:", "not a real date and time")),
    "created-hour-25": (_set("created", "2026-01-01T25:00:00Z"), ("created:", "not a real date and time")),
    "created-space-separated": (_set("created", "2026-01-01 00:00:00Z"), ("created:", "not an RFC 3339")),
    "created-two-days-ahead": (
        _set("created", format_time(NOW + timedelta(days=2))),
        ("created:", "more than a day in the future"),
    ),
    "created-far-future": (_set("created", "2999-01-01T00:00:00Z"), ("more than a day in the future",)),
    "expires-naive": (_set("expires", "2099-01-01T00:00:00"), ("expires:", "with a time zone")),
    "expires-nonsense": (_set("expires", "never"), ("expires: 'never'",)),
    "expires-before-created": (_set("expires", "2025-12-31T00:00:00Z"), ("expires:", "not later than created")),
    "expires-equal-to-created": (_set("expires", "2026-01-01T00:00:00Z"), ("not later than created",)),
    "expired": (_set("expires", "2026-06-01T00:00:00Z"), ("the bundle expired at 2026-06-01T00:00:00Z",)),
    "version-not-pep440": (_set("version", "banana"), ("version:", "'banana' is not a version")),
    "version-shell": (_set("version", "1.0.0; rm -rf /"), ("version:", "is not a version")),
    "version-empty": (_set("version", ""), ("version:", "is not a version")),
    "version-overlong": (_set("version", "1." + "0" * 300), ("version:", "over 128")),
    "version-with-whitespace": (_set("version", " 1.0.0\n"), ("version:", "only letters, digits")),
    "name-not-a-bundle-name": (_set("name", "clinic/../../x"), ("bundle name", "not a valid bundle name")),
    "name-empty": (_set("name", ""), ("bundle name", "not a valid bundle name")),
    "created-not-a-string": (_set("created", 1767225600), ("the bundle descriptor is malformed", "created")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trusted_signed_bad_metadata_is_refused_before_the_rollback_state(
    case: str, tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    edit, fragments = CASES[case]
    doc = Layout(bundle).descriptor()
    edit(doc)
    resign(bundle, keys.private, doc)
    state = tmp_path / "state.json"
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path, "--state-file", state)
    refused(result, "bundle does not verify", *fragments)
    assert not state.exists()  # an odd version never reaches (or poisons) the high-water mark


def test_created_within_a_day_of_clock_skew_is_accepted(bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    doc = Layout(bundle).descriptor()
    doc["created"] = format_time(NOW + timedelta(hours=12))
    resign(bundle, keys.private, doc)
    assert gapseal("bundle", "verify", bundle, "--key", keys.public_path).code == 0


def test_a_time_zone_offset_other_than_z_is_accepted(bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    doc = Layout(bundle).descriptor()
    doc["created"] = "2026-01-01T05:30:00+05:30"
    doc["expires"] = "2099-01-01T00:00:00-08:00"
    resign(bundle, keys.private, doc)
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["expires"] == "2099-01-01T00:00:00-08:00"


def test_rollback_looking_never_moves_the_mark_using_does(tmp_path: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    """verify/inspect only look; extract uses (moves the mark); the same version again is fine; older needs a flag."""
    old = make_bundle(tmp_path / "old", keys, version="1.0.0").path
    new = make_bundle(tmp_path / "new", keys, version="2.0.0").path
    state = tmp_path / "state.json"
    key = ("--key", keys.public_path, "--state-file", state)

    assert gapseal("bundle", "verify", new, *key).code == 0
    assert gapseal("bundle", "verify", old, *key).code == 0  # nothing was used yet: the mark did not move

    used = gapseal("bundle", "extract", new, "--files", "docs", "--out", tmp_path / "x1", *key)
    assert used.code == 0, used.err
    assert json.loads(state.read_bytes())["clinic"]["version"] == "2.0.0"
    again = gapseal("bundle", "extract", new, "--files", "docs", "--out", tmp_path / "x2", *key)
    assert again.code == 0, again.err  # the same version is always usable again (repair needs no flag)

    refused(gapseal("bundle", "verify", old, *key), "rollback refused", "1.0.0 is older than 2.0.0")
    refused(gapseal("bundle", "extract", old, "--files", "docs", "--out", tmp_path / "x3", *key), "rollback refused")
    assert not (tmp_path / "x3").exists()
    allowed = gapseal("bundle", "verify", old, *key, "--allow-downgrade", "--json")
    assert allowed.code == 0, allowed.err
    assert json.loads(allowed.out)["downgrade_allowed"] is True
    assert json.loads(state.read_bytes())["clinic"]["version"] == "2.0.0"  # an allowed downgrade does not lower it


def test_inspect_never_prints_terminal_escapes_from_a_bundle(bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    """Description and licence are free text from an unverified bundle: shown, but never as escape sequences."""
    doc = Layout(bundle).descriptor()
    doc["description"] = "notes \x1b]0;pwned\x07\x1b[2J[red]x[/red]"
    doc["license"] = "MIT\x1b[8m"
    resign(bundle, keys.private, doc)
    shown = gapseal("bundle", "inspect", bundle)
    assert shown.code == 0, shown.err
    assert "\x1b" not in shown.out
    assert "notes ?]0;pwned??[2J[red]x[/red]" in shown.out
    assert "licence   MIT?[8m" in shown.out


def test_an_unrepresentable_source_date_epoch_is_a_usage_error(
    tmp_path: Path, keys: KeyPair, gapseal: Gapseal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.bundles import make_inputs

    spec = make_inputs(tmp_path / "in")
    spec.write_text(spec.read_text().replace('  created: "2026-01-01T00:00:00Z"\n', ""))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "9" * 30)
    result = gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", tmp_path / "b")
    refused(result, "SOURCE_DATE_EPOCH", "not a time this system can represent", code=2)
    assert not (tmp_path / "b").exists()
