"""trust.yaml and the --key/--trust resolution every verifying command uses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gapseal.errors import EXIT_USAGE, KeyLoadError, UsageError
from gapseal.signing.keys import generate_key_pair, load_public_key
from gapseal.signing.trust import load_trust, trusted_keys


@pytest.fixture
def pubs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "keys").mkdir()
    _, a = generate_key_pair(tmp_path / "keys" / "a", None)
    _, b = generate_key_pair(tmp_path / "keys" / "b", None)
    return a, b


def _trust(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def _inline(pem: Path, indent: int = 6) -> str:
    return "\n".join(" " * indent + line for line in pem.read_text().splitlines())


def test_path_and_inline_pem(tmp_path: Path, pubs: tuple[Path, Path]) -> None:
    a, b = pubs
    t = _trust(
        tmp_path / "trust.yaml",
        "apiVersion: gapseal/v1\nkind: Trust\nkeys:\n"
        "  - {name: release, path: keys/a.pub}\n"
        "  - name: audit\n    pem: |\n" + _inline(b) + "\n",
    )
    assert [k.key_id for k in load_trust(t)] == [load_public_key(a).key_id, load_public_key(b).key_id]


def test_paths_are_relative_to_the_trust_file(
    tmp_path: Path, pubs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _trust(tmp_path / "trust.yaml", "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: keys/a.pub}]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_trust(t)[0].key_id == load_public_key(pubs[0]).key_id


@pytest.mark.parametrize(
    ("name", "body", "match"),
    [
        (
            "unknown_field",
            "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: keys/a.pub, colour: red}]\n",
            r"keys\.0\.colour: Extra inputs are not permitted",
        ),
        (
            "unknown_top_field",
            "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: keys/a.pub}]\nx: 1\n",
            r"x: Extra inputs are not permitted",
        ),
        (
            "wrong_api_version",
            "apiVersion: gapseal/v2\nkind: Trust\nkeys: [{name: a, path: keys/a.pub}]\n",
            r"apiVersion: Input should be 'gapseal/v1'",
        ),
        ("missing_api_version", "kind: Trust\nkeys: [{name: a, path: keys/a.pub}]\n", r"apiVersion: Field required"),
        (
            "wrong_kind",
            "apiVersion: gapseal/v1\nkind: Bundle\nkeys: [{name: a, path: keys/a.pub}]\n",
            r"kind: Input should be 'Trust'",
        ),
        (
            "both_sources",
            "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: keys/a.pub, pem: x}]\n",
            r"keys\.0: Value error, give exactly one of 'path' or 'pem'",
        ),
        (
            "no_source",
            "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a}]\n",
            r"keys\.0: Value error, give exactly one of 'path' or 'pem'",
        ),
        ("no_keys", "apiVersion: gapseal/v1\nkind: Trust\nkeys: []\n", r"keys: List should have at least 1 item"),
        ("empty_name", "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: '', path: keys/a.pub}]\n", r"keys\.0\.name"),
        (
            "duplicate_name",
            "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: keys/a.pub}, {name: a, path: keys/b.pub}]\n",
            r"keys\.1\.name: duplicate name 'a'",
        ),
        (
            "duplicate_key",
            "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: keys/a.pub}, {name: b, path: keys/a.pub}]\n",
            r"keys\.1 \('b'\) is the same key as 'a'",
        ),
        ("not_a_mapping", "- a\n- b\n", "not a YAML mapping"),
        ("empty_file", "", "not a YAML mapping"),
        ("bad_yaml", "apiVersion: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_trust_file(tmp_path: Path, pubs: tuple[Path, Path], name: str, body: str, match: str) -> None:
    t = _trust(tmp_path / f"{name}.yaml", body)
    with pytest.raises(KeyLoadError, match=match) as e:
        load_trust(t)
    assert e.value.where == str(t)


def test_missing_trust_file(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="does not exist") as e:
        load_trust(tmp_path / "absent.yaml")
    assert e.value.where == str(tmp_path / "absent.yaml")


def test_missing_key_file_names_the_key_file(tmp_path: Path) -> None:
    t = _trust(tmp_path / "trust.yaml", "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: gone.pub}]\n")
    with pytest.raises(KeyLoadError, match="does not exist") as e:
        load_trust(t)
    assert e.value.where == str(tmp_path / "gone.pub")


def test_inline_private_key_is_refused(tmp_path: Path) -> None:
    private, _ = generate_key_pair(tmp_path / "p", None)
    t = _trust(
        tmp_path / "trust.yaml",
        "apiVersion: gapseal/v1\nkind: Trust\nkeys:\n  - name: oops\n    pem: |\n" + _inline(private) + "\n",
    )
    with pytest.raises(KeyLoadError, match="this is a private key") as e:
        load_trust(t)
    assert e.value.where is not None
    assert "keys.0.pem (oops)" in e.value.where


def test_inline_garbage_pem(tmp_path: Path) -> None:
    t = _trust(tmp_path / "trust.yaml", "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, pem: hello}]\n")
    with pytest.raises(KeyLoadError, match="not a PEM public key"):
        load_trust(t)


def test_trusted_keys_needs_a_key_or_a_trust_file() -> None:
    with pytest.raises(UsageError, match="no trusted key given") as e:
        trusted_keys([], None)
    assert e.value.exit_code == EXIT_USAGE
    assert e.value.hint is not None
    assert "--key" in e.value.hint
    assert "--trust" in e.value.hint


def test_trusted_keys_merges_and_deduplicates(tmp_path: Path, pubs: tuple[Path, Path]) -> None:
    a, b = pubs
    t = _trust(tmp_path / "trust.yaml", "apiVersion: gapseal/v1\nkind: Trust\nkeys: [{name: a, path: keys/a.pub}]\n")
    keys = trusted_keys([a, b, a], t)
    assert [k.key_id for k in keys] == [load_public_key(a).key_id, load_public_key(b).key_id]
    assert [k.key_id for k in trusted_keys([], t)] == [load_public_key(a).key_id]
    assert [k.key_id for k in trusted_keys([b], None)] == [load_public_key(b).key_id]


def test_trusted_keys_refuses_a_private_key_as_key(tmp_path: Path) -> None:
    private, _ = generate_key_pair(tmp_path / "p", None)
    with pytest.raises(KeyLoadError, match="this is a private key"):
        trusted_keys([private], None)


def test_schema_describes_the_trust_file() -> None:
    """The published file is held to the model by tests/unit/test_schemas.py (python -m gapseal.schemas)."""
    from gapseal.signing.trust import trust_schema

    schema = trust_schema()
    assert schema["required"] == ["apiVersion", "kind", "keys"]
    assert all("description" in p for p in schema["$defs"]["TrustedKeyEntry"]["properties"].values())
