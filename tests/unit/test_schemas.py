"""Every published JSON Schema (gapseal/schemas/): current with its model, and every document says what it is.

Regenerate explicitly with ``python -m gapseal.schemas`` after changing a model; never silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # via ansible-lint (test extra)
import pytest

from gapseal import schemas
from gapseal.cli import main
from gapseal.errors import VerificationError

KINDS = {
    # documents gapseal writes: kind and version are fixed by the schema
    "install-report.v1.schema.json": "gapseal.InstallReport",
    "hosts-status.v1.schema.json": "gapseal.HostsStatus",
    "uninstall-report.v1.schema.json": "gapseal.UninstallReport",
    "bundle-diff.v1.schema.json": "gapseal.BundleDiff",
    "error.v1.schema.json": "gapseal.Error",
    "installed-record.v1.schema.json": "gapseal.InstalledRecord",
}
READ_FILES = {"spec.v1.schema.json": "Bundle", "trust.v1.schema.json": "Trust", "waivers.v1.schema.json": "Waivers"}


@pytest.mark.parametrize("name", list(schemas.PUBLISHED))
def test_published_schema_is_current(name: str) -> None:
    assert schemas.path(name).read_text(encoding="utf-8") == schemas.render(name), (
        f"{schemas.path(name)} is stale: run `python -m gapseal.schemas`"
    )
    jsonschema.Draft202012Validator.check_schema(schemas.schema(name))


def test_no_schema_file_is_published_without_a_model() -> None:
    on_disk = {p.name for p in Path(schemas.SCHEMAS_DIR).glob("*.schema.json")}
    assert on_disk == set(schemas.PUBLISHED)


@pytest.mark.parametrize(("name", "kind"), list(KINDS.items()))
def test_written_documents_carry_kind_and_version(name: str, kind: str) -> None:
    props = schemas.schema(name)["properties"]
    assert props["kind"]["const"] == kind
    assert props["version"]["const"] == 1
    assert {"kind", "version"} <= set(schemas.schema(name).get("required", [])) or "default" in props["kind"]


@pytest.mark.parametrize(("name", "kind"), list(READ_FILES.items()))
def test_files_gapseal_reads_spell_api_version_one_way(name: str, kind: str) -> None:
    props = schemas.schema(name)["properties"]
    assert props["apiVersion"]["const"] == "gapseal/v1"
    assert props["kind"]["const"] == kind
    assert "api_version" not in props


def test_the_site_file_spells_api_version_the_same_way() -> None:
    assert schemas.schema("site.v1.schema.json")["properties"]["apiVersion"]["const"] == "gapseal/v1"


def test_an_error_in_json_is_the_published_error_document_with_one_list_of_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "k.pub").write_text("not a key\n")
    assert main(["bundle", "verify", str(tmp_path), "--key", str(tmp_path / "k.pub"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, schemas.schema("error.v1.schema.json"))
    assert doc["problems"] == [doc["message"]]
    several = VerificationError("bundle does not verify: a", problems=["a", "b"]).as_dict()
    jsonschema.validate(several, schemas.schema("error.v1.schema.json"))
    assert several["problems"] == ["a", "b"]


def test_the_module_checks_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert schemas.main(["--check"]) == 0
    monkeypatch.setattr(schemas, "SCHEMAS_DIR", tmp_path)
    assert schemas.main(["--check"]) == 1, "missing files are stale"
    assert schemas.main([]) == 0
    assert schemas.main(["--check"]) == 0
    assert schemas.main(["--bogus"]) == 2
