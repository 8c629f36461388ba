"""The bundle spec: the issue's example loads; every bad spec fixture is refused with file, line and field path."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from packaging.version import Version

from gapseal.bundler.spec import BundleSpec, LoadedSpec, Requirements, constraint, load_spec, parse_spec
from gapseal.errors import SpecError

BAD = Path(__file__).parents[2] / "fixtures" / "specs" / "bad"
BAD_SPECS = sorted(BAD.glob("*.yaml"))

ISSUE_SPEC = """\
apiVersion: gapseal/v1
kind: Bundle
metadata: {name: clinic-assistant, version: 1.4.0}
models:
  - name: minilm
    path: models/minilm          # a directory, a single file (.gguf/.safetensors), or a Hugging Face cache snapshot dir
files:
  - name: docs
    path: docs/
builds:
  - name: llama-server
    variants:
      - {backend: cuda, arch: amd64, path: builds/cuda, requires: {nvidia_driver: ">=535", compute_capability: ">=8.0"}}
      - {backend: rocm, arch: amd64, path: builds/rocm, requires: {gfx: [gfx90a, gfx942]}}
      - {backend: vulkan, arch: amd64, path: builds/vulkan, requires: {vulkan_api: ">=1.3"}}
      - {backend: cpu, arch: amd64, path: builds/cpu, requires: {cpu_flags: [avx2]}}
"""


def _tree(root: Path, *files: str) -> None:
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"content of {rel}\n")


@pytest.fixture
def issue_spec(tmp_path: Path) -> Path:
    _tree(
        tmp_path,
        "models/minilm/config.json",
        "docs/guide.md",
        "builds/cuda/llama-server",
        "builds/rocm/llama-server",
        "builds/vulkan/llama-server",
        "builds/cpu/llama-server",
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(ISSUE_SPEC)
    return spec


def _expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message fragment>'"
    return first.removeprefix("# expect: ")


def test_the_issue_example_loads(issue_spec: Path) -> None:
    loaded = load_spec(issue_spec)
    assert isinstance(loaded, LoadedSpec)
    assert loaded.directory == issue_spec.parent.resolve()
    spec = loaded.spec
    assert spec.api_version == "gapseal/v1"
    assert spec.metadata.name == "clinic-assistant"
    assert Version(spec.metadata.version) == Version("1.4.0")
    assert spec.metadata.created is None
    assert spec.models[0].format == "auto"
    assert [v.backend for v in spec.builds[0].variants] == ["cuda", "rocm", "vulkan", "cpu"]
    cuda = spec.builds[0].variants[0].requires
    assert cuda == Requirements(nvidia_driver=">=535", compute_capability=">=8.0")
    assert spec.builds[0].variants[1].requires.gfx == ["gfx90a", "gfx942"]
    assert spec.builds[0].variants[3].requires.cpu_flags == ["avx2"]
    assert spec.builds[0].variants[2].requires.vulkan_api == ">=1.3"


def test_components_in_spec_order_with_field_paths(issue_spec: Path) -> None:
    loaded = load_spec(issue_spec)
    refs = list(loaded.spec.components())
    assert [(r.kind, r.name, r.variant, r.field) for r in refs] == [
        ("model", "minilm", None, "models[0].path"),
        ("files", "docs", None, "files[0].path"),
        ("build", "llama-server", 0, "builds[0].variants[0].path"),
        ("build", "llama-server", 1, "builds[0].variants[1].path"),
        ("build", "llama-server", 2, "builds[0].variants[2].path"),
        ("build", "llama-server", 3, "builds[0].variants[3].path"),
    ]
    assert loaded.component_path(refs[1]) == loaded.directory / "docs"


def test_requirements_constraints_are_specifier_sets() -> None:
    req = Requirements(nvidia_driver=">=535", compute_capability=">=8.0,<10")
    assert req.nvidia_driver is not None
    assert req.compute_capability is not None
    assert constraint(req.nvidia_driver).contains("550.54.15")
    assert not constraint(req.nvidia_driver).contains("470.256.02")
    assert constraint(req.compute_capability).contains("8.6")
    assert not constraint(req.compute_capability).contains("7.5")
    assert Requirements() == Requirements.model_validate({})


def test_spec_models_are_frozen(issue_spec: Path) -> None:
    spec = load_spec(issue_spec).spec
    with pytest.raises(Exception, match="frozen"):
        spec.metadata.name = "other"  # type: ignore[misc]


def test_metadata_dates_and_round_trip(tmp_path: Path) -> None:
    _tree(tmp_path, "docs/a.txt")
    text = (
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        "metadata: {name: demo, version: 2.0.0rc1, created: 2026-01-31T12:00:00Z,"
        " expires: '2027-01-31T12:00:00+01:00', description: site docs, license: Apache-2.0}\n"
        "files: [{name: docs, path: docs}]\n"
    )
    spec, _ = parse_spec(text, tmp_path / "spec.yaml")
    assert spec.metadata.created == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert spec.metadata.expires is not None
    assert spec.metadata.expires.utcoffset() is not None
    again = BundleSpec.model_validate_json(spec.model_dump_json(by_alias=True))
    assert again == spec


def test_json_schema_is_published() -> None:
    schema = BundleSpec.model_json_schema(by_alias=True)
    assert "apiVersion" in schema["properties"]
    assert schema["additionalProperties"] is False
    req = schema["$defs"]["Requirements"]
    assert req["properties"]["gfx"]["description"].startswith("AMD GPU targets")
    json.dumps(schema)


def test_absolute_path_inside_the_spec_dir_is_allowed(tmp_path: Path) -> None:
    _tree(tmp_path, "docs/a.txt")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"apiVersion: gapseal/v1\nkind: Bundle\nmetadata: {{name: demo, version: 1.0.0}}\n"
        f"files: [{{name: docs, path: '{tmp_path / 'docs'}'}}]\n"
    )
    assert load_spec(spec).spec.files[0].path == str(tmp_path / "docs")


def test_dotdot_that_stays_inside_is_allowed(tmp_path: Path) -> None:
    _tree(tmp_path, "docs/a.txt", "models/m/w.bin")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\nmetadata: {name: demo, version: 1.0.0}\n"
        "files: [{name: docs, path: models/../docs}]\n"
    )
    loaded = load_spec(spec)
    assert loaded.component_path(next(loaded.spec.components())) == loaded.directory / "docs"


@pytest.mark.parametrize("spec_file", BAD_SPECS, ids=[p.stem for p in BAD_SPECS])
def test_bad_spec_is_refused_naming_file_and_field(spec_file: Path) -> None:
    expected = _expectation(spec_file)
    with pytest.raises(SpecError) as info:
        load_spec(spec_file)
    message = info.value.message
    assert str(spec_file) in message, message
    assert expected in message, f"expected {expected!r} in:\n{message}"


def test_there_are_bad_spec_fixtures() -> None:
    assert len(BAD_SPECS) >= 30


def _write(tmp_path: Path, body: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text("apiVersion: gapseal/v1\nkind: Bundle\nmetadata: {name: demo, version: 1.0.0}\n" + body)
    return spec


def test_symlink_escaping_the_spec_dir_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _tree(outside, "secret.txt")
    project = tmp_path / "project"
    project.mkdir()
    (project / "docs").symlink_to(outside)
    spec = _write(project, "files: [{name: docs, path: docs}]\n")
    with pytest.raises(
        SpecError, match=r"spec.yaml:4: files\[0\].path: 'docs' resolves to .*outside, outside the spec"
    ):
        load_spec(spec)


def test_dangling_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "docs").symlink_to(tmp_path / "gone")
    spec = _write(tmp_path, "files: [{name: docs, path: docs}]\n")
    with pytest.raises(SpecError, match=r"files\[0\].path: 'docs' does not exist|cannot be resolved"):
        load_spec(spec)


def test_empty_component_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models/empty/sub").mkdir(parents=True)
    spec = _write(tmp_path, "models: [{name: m, path: models/empty}]\n")
    with pytest.raises(SpecError, match=r"spec.yaml:4: models\[0\].path: 'models/empty' is an empty directory"):
        load_spec(spec)


def test_fifo_as_component_path_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    spec = _write(tmp_path, "files: [{name: p, path: pipe}]\n")
    with pytest.raises(SpecError, match=r"files\[0\].path: 'pipe' is neither a directory nor a regular file"):
        load_spec(spec)


def test_unreadable_and_oversized_and_binary_specs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(SpecError, match="larger than"):
        load_spec(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"apiVersion: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"not UTF-8 text \(byte 12\)"):
        load_spec(binary)


def test_several_errors_are_all_reported(tmp_path: Path) -> None:
    _tree(tmp_path, "docs/a.txt")
    spec = _write(tmp_path, "files: [{name: Docs, path: docs, mode: '0644'}]\nbuilds: [{name: b}]\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    lines = info.value.message.splitlines()
    assert any("files[0].name: 'Docs' is not a valid component name" in line for line in lines)
    assert any("files[0].mode: unknown field" in line for line in lines)
    assert any(":5: builds[0].variants: required field is missing" in line for line in lines)
    assert info.value.where == str(spec)
