"""The bundle spec: what a security team asks to bundle, as YAML, checked before any byte is read.

A spec names models, plain file sets and hardware-specific builds, each by a path relative to the spec file::

    apiVersion: gapseal/v1
    kind: Bundle
    metadata: {name: clinic-assistant, version: 1.4.0}
    models:
      - {name: minilm, path: models/minilm}
    files:
      - {name: docs, path: docs/}
    builds:
      - name: llama-server
        variants:
          - {backend: cuda, arch: amd64, path: builds/cuda, requires: {nvidia_driver: ">=535"}}

``load_spec`` parses it with ``yaml.safe_load`` semantics (plus: duplicate keys and aliases are refused), validates it
with the pydantic models below, and checks every path: it must exist, stay inside the spec's directory after ``..``
and symlinks are resolved, and not be empty. Every failure is a ``SpecError`` whose message names the file, the line
when known, and the field path, e.g. ``spec.yaml:14: builds[0].variants[1].requires.gfx: ...``.

Adding a component kind (``images:``, ``services:``) means: a model class, a list field on ``BundleSpec``, and one
line in ``BundleSpec.component_names`` so names stay unique across kinds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from gapseal.bundler.rollback import version_problem
from gapseal.errors import SpecError

API_VERSION = "gapseal/v1"
"""The only ``apiVersion`` this gapseal reads."""
KIND = "Bundle"
"""The only ``kind`` this gapseal reads."""
MAX_SPEC_BYTES = 1024 * 1024
"""A spec is a short hand-written file; anything larger is refused before parsing."""

_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_COMPONENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_GFX = re.compile(r"gfx[0-9a-f]{3,5}")
_CPU_FLAG = re.compile(r"[a-z0-9_.]{1,64}")
_EMBEDDED_FIELD = re.compile(r"([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): ")


# ---------------------------------------------------------------------------------------------------------------------
# Field types


def bundle_name_problem(value: str) -> str | None:
    """Why ``value`` is not a bundle name (the rollback state and install records are keyed by it), or None."""
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a valid bundle name: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def _check_bundle_name(value: str) -> str:
    problem = bundle_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _check_component_name(value: str) -> str:
    if not _COMPONENT_NAME.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"{value!r} is not a valid component name: use 1-63 lowercase letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def _require_string(value: Any) -> Any:
    """Refuse YAML numbers where a version is expected: ``1.10`` reads as the float 1.1."""
    if isinstance(value, bool | int | float):
        raise ValueError(f"must be a string, got the number {value!r}; quote it (YAML reads 1.10 as 1.1)")
    return value


def _check_version(value: str) -> str:
    problem = version_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _check_constraint(value: str) -> str:
    try:
        spec = SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(f"{value!r} is not a version constraint (e.g. '>=535', '>=8.0,<10')") from None
    if not str(spec):
        raise ValueError("an empty constraint means nothing; leave the field out instead")
    return value


def _check_timestamp(value: Any) -> Any:
    """Accept an RFC 3339 date-time with a time zone, as YAML or as a string; refuse bare dates and naive times."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("needs a time zone (RFC 3339, e.g. 2026-01-31T12:00:00Z)")
        return value
    if isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
            raise ValueError(f"{value!r} is not an RFC 3339 date-time with a time zone (e.g. 2026-01-31T12:00:00Z)")
        return value
    if isinstance(value, date):
        raise ValueError(
            f"{value} is a date; an RFC 3339 date-time with a time zone is needed (e.g. {value}T00:00:00Z)"
        )
    raise ValueError(f"must be an RFC 3339 date-time with a time zone (e.g. 2026-01-31T12:00:00Z), got {value!r}")


def _unique_items(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("an empty list means nothing; leave the field out instead")
    seen: set[str] = set()
    for item in value:
        if item in seen:
            raise ValueError(f"{item!r} is listed twice")
        seen.add(item)
    return value


BundleName = Annotated[str, AfterValidator(_check_bundle_name)]
ComponentName = Annotated[str, AfterValidator(_check_component_name)]
VersionString = Annotated[str, BeforeValidator(_require_string), AfterValidator(_check_version)]
VersionConstraint = Annotated[str, BeforeValidator(_require_string), AfterValidator(_check_constraint)]
"""A ``packaging`` specifier set as a string, e.g. ``">=535"``; ``constraint()`` turns it into a ``SpecifierSet``."""
Timestamp = Annotated[datetime, BeforeValidator(_check_timestamp)]


def _check_path_text(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{value!r} holds a control character")
    return value


SpecPath = Annotated[str, Field(min_length=1), AfterValidator(_check_path_text)]


def _check_gfx(value: list[str]) -> list[str]:
    for item in value:
        if not _GFX.fullmatch(item):
            raise ValueError(f"{item!r} is not an AMD GPU target (e.g. gfx90a, gfx942, gfx1100)")
    return _unique_items(value)


def _check_cpu_flags(value: list[str]) -> list[str]:
    for item in value:
        if not _CPU_FLAG.fullmatch(item):
            raise ValueError(f"{item!r} is not a CPU flag as /proc/cpuinfo spells it (lowercase, e.g. avx2)")
    return _unique_items(value)


def constraint(value: str) -> SpecifierSet:
    """Return the ``SpecifierSet`` of a validated ``VersionConstraint`` string (pre-releases count as versions)."""
    return SpecifierSet(value, prereleases=True)


# ---------------------------------------------------------------------------------------------------------------------
# Models


class _SpecModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, strict=False)


class Metadata(_SpecModel):
    """Who the bundle is: its name and version identify it for rollback protection on the far side."""

    name: BundleName
    """Lowercase DNS-label-like identifier (1-63 of ``a-z0-9-``); the rollback high-water mark is kept per name."""
    version: VersionString
    """PEP 440 version (``1.4.0``); the verifier refuses a version lower than the highest it has seen."""
    created: Timestamp | None = None
    """RFC 3339 date-time with a time zone; when absent, ``SOURCE_DATE_EPOCH`` or the time of creation is used."""
    expires: Timestamp | None = None
    """RFC 3339 date-time with a time zone after which the bundle no longer verifies."""
    description: str = ""
    """Free text shown by ``inspect``."""
    license: str | None = None
    """SPDX expression or free text for the bundle as a whole."""

    @model_validator(mode="after")
    def _expires_after_created(self) -> Metadata:
        if self.created is not None and self.expires is not None and self.expires <= self.created:
            raise ValueError("expires: must be later than created")
        return self


ModelFormat = Literal["auto", "safetensors", "gguf", "pytorch", "onnx"]


class ModelSpec(_SpecModel):
    """A model: a directory, a single weight file, or a Hugging Face cache snapshot directory."""

    name: ComponentName
    """Unique across every component of the spec."""
    path: SpecPath
    """Relative to the spec file (or absolute, inside the spec's directory)."""
    format: ModelFormat = "auto"
    """Expected weight format; ``auto`` detects it. A declared format the files contradict is an error."""
    license: str | None = None
    """The model's license (SPDX id or free text), recorded in the bundle."""
    source: str | None = None
    """Where the model came from (a URL, a Hugging Face repo id), recorded in the bundle."""


class FilesSpec(_SpecModel):
    """A set of plain files (documents, tokenizers, configs): a directory or a single file."""

    name: ComponentName
    """Unique across every component of the spec."""
    path: SpecPath
    """Relative to the spec file (or absolute, inside the spec's directory)."""


Backend = Literal["cuda", "rocm", "vulkan", "cpu"]
Arch = Literal["amd64", "arm64"]


class Requirements(_SpecModel):
    """What a host must have for a build variant to run; every field is optional and all given ones must hold.

    The installer's variant selection reads this model; version constraints are ``packaging`` specifier strings
    (turn them into ``SpecifierSet`` with ``constraint()``), lists are sets of names that must all be present
    (``gfx``: any one of the listed targets; see the field docs).
    """

    nvidia_driver: VersionConstraint | None = None
    """NVIDIA driver version constraint, e.g. ``">=535"`` (compared to ``nvidia-smi`` ``driver_version``)."""
    compute_capability: VersionConstraint | None = None
    """CUDA compute capability constraint, e.g. ``">=8.0"`` (from ``nvidia-smi --query-gpu=compute_cap``)."""
    gfx: Annotated[list[str], AfterValidator(_check_gfx)] | None = None
    """AMD GPU targets the build was compiled for (e.g. ``[gfx90a, gfx942]``); the host's GPU must be one of them."""
    vulkan_api: VersionConstraint | None = None
    """Vulkan API version constraint, e.g. ``">=1.3"`` (from ``vulkaninfo --summary`` ``apiVersion``)."""
    cpu_flags: Annotated[list[str], AfterValidator(_check_cpu_flags)] | None = None
    """CPU flags the host must all have, as ``/proc/cpuinfo`` ``flags`` spells them (e.g. ``[avx2, fma]``)."""


class VariantSpec(_SpecModel):
    """One build of a program for one backend and architecture."""

    backend: Backend
    """Which accelerator stack the build targets."""
    arch: Arch
    """CPU architecture of the build."""
    path: SpecPath
    """Relative to the spec file (or absolute, inside the spec's directory)."""
    requires: Requirements = Field(default_factory=Requirements)
    """What the host must have for this variant to be chosen."""


class BuildSpec(_SpecModel):
    """A program shipped as several hardware-specific variants; the installer picks one per host."""

    name: ComponentName
    """Unique across every component of the spec."""
    variants: Annotated[list[VariantSpec], Field(min_length=1)]
    """At least one variant."""

    @model_validator(mode="after")
    def _distinct_variants(self) -> BuildSpec:
        seen: dict[tuple[str, str], int] = {}
        for i, v in enumerate(self.variants):
            key = (v.backend, v.arch)
            if key in seen:
                raise ValueError(
                    f"variants[{i}]: same backend and arch ({v.backend}-{v.arch}) as variants[{seen[key]}]; "
                    f"a variant is stored as builds/{self.name}/{v.backend}-{v.arch}/, so give the second one "
                    "its own build name"
                )
            seen[key] = i
        return self


_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")


def _check_image_source(value: str) -> str:
    from gapseal.bundler.images import split_source  # the one parser of source forms, shared with create

    split_source(value)
    return value


def _check_platforms(value: list[str]) -> list[str]:
    for item in value:
        if not _PLATFORM.fullmatch(item):
            raise ValueError(f"{item!r} is not a platform: use os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")
    return _unique_items(value)


class ImageSpec(_SpecModel):
    """A container image, stored byte for byte (manifests, indexes and layers keep their digests)."""

    name: ComponentName
    """Unique across every component; the image's ``org.opencontainers.image.ref.name`` in the bundle's index."""
    source: Annotated[str, Field(min_length=1), AfterValidator(_check_path_text), AfterValidator(_check_image_source)]
    """``oci:DIR[:TAG]``, ``oci-archive:FILE``, ``docker-archive:FILE`` (paths relative to the spec file) or
    ``docker://HOST[:PORT]/REPO:TAG`` (a registry the build machine reaches; only the named host is contacted)."""
    platforms: Annotated[list[str], AfterValidator(_check_platforms)] | None = None
    """Platforms to keep from a multi-arch index (``os/arch[/variant]``); absent keeps every platform."""
    insecure: bool = False
    """Allow plain HTTP or an unverified TLS certificate for a ``docker://`` source (a loopback or lab registry)."""

    @model_validator(mode="after")
    def _insecure_only_for_registries(self) -> ImageSpec:
        if self.insecure and not self.source.startswith("docker://"):
            raise ValueError("insecure: only means something for a docker:// source; remove it")
        return self


@dataclass(frozen=True)
class ComponentRef:
    """One path a spec asks to bundle: a model, a file set, or one variant of a build."""

    kind: Literal["model", "files", "build", "image"]
    name: str
    path: str
    """As written in the spec."""
    field: str
    """The field path of ``path`` in the spec, for error messages (``builds[0].variants[1].path``)."""
    variant: int | None = None
    """Index of the variant within its build (builds only)."""


_DURATION = re.compile(r"([0-9]{1,5})(s|m)?")


def _duration_seconds(value: Any) -> Any:
    """``180``, ``"180s"`` or ``"3m"`` -> seconds (an int); anything else is left for pydantic to refuse."""
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if m is None:
            raise ValueError(f"{value!r} is not a duration: use seconds, e.g. 180s or 3m")
        return int(m.group(1)) * (60 if m.group(2) == "m" else 1)
    return value


class HealthRequest(_SpecModel):
    """One real request after the health check passed (for llama.cpp: a short completion); any 2xx passes."""

    path: str
    """HTTP path, POSTed to the service's bind address and port (``/v1/completions``)."""
    body: dict[str, Any] = Field(default_factory=dict)
    """The JSON body (``{prompt: "...", max_tokens: 4}``)."""

    @model_validator(mode="after")
    def _path_is_a_path(self) -> HealthRequest:
        if not self.path.startswith("/") or any(c in self.path for c in " \t\r\n#"):
            raise ValueError(f"path: {self.path!r} must be an absolute HTTP path such as /v1/completions")
        return self


class HealthCheck(_SpecModel):
    """How the installer knows a started service works: an HTTP path or a command, within ``timeout``."""

    http: str | None = None
    """HTTP path on the service's bind address and port that answers 2xx once it is ready (``/health``)."""
    command: list[str] | None = None
    """Or a command (argument list, run on the host) that exits 0 once it is ready."""
    timeout: Annotated[int, BeforeValidator(_duration_seconds), Field(ge=1, le=3600)] = 180
    """How long to wait for readiness, in seconds (``180s`` and ``3m`` are accepted too)."""
    request: HealthRequest | None = None
    """One real request after readiness (HTTP services only)."""

    @model_validator(mode="after")
    def _one_probe(self) -> HealthCheck:
        if (self.http is None) == (self.command is None):
            raise ValueError("give exactly one of http (a path) or command (an argument list)")
        if self.http is not None and not self.http.startswith("/"):
            raise ValueError(f"http: {self.http!r} must be an absolute HTTP path such as /health")
        if self.command is not None and not self.command:
            raise ValueError("command: must not be empty")
        if self.request is not None and self.http is None:
            raise ValueError("request: needs an http health check (the request goes to the same address and port)")
        return self


_UNIT_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ServiceSpec(_SpecModel):
    """An inference service the installer defines as a systemd unit (offline environment, bound to ``bind``)."""

    name: ComponentName
    """Service name; the unit is ``gapseal-<name>.service``."""
    build: ComponentName
    """The build whose chosen variant runs the service (a name from ``builds``)."""
    model: ComponentName | None = None
    """The model it serves (a name from ``models``)."""
    exec: str = "bin/serve"
    """Executable, relative to the installed variant's directory."""
    args: list[str] = Field(default_factory=list)
    """Arguments; ``{model_dir}``, ``{build_dir}``, ``{bind}`` and ``{port}`` are filled in on each host."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """TCP port the service listens on."""
    bind: str = "127.0.0.1"
    """Address the service binds to (an IP address)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment; the offline/no-telemetry switches are always set and cannot be overridden."""
    health: HealthCheck | None = None
    """Checked after the unit starts (then one real request); a failure fails the host with the unit's exit status
    and last journal lines."""
    fallback: bool = False
    """On a failed health check, try the build's next variant that fits the host; otherwise restore the version the
    host ran before."""

    @model_validator(mode="after")
    def _safe_exec_and_bind(self) -> ServiceSpec:
        import ipaddress

        if self.exec.startswith("/") or ".." in self.exec.split("/"):
            raise ValueError(f"exec: {self.exec!r} must be a path inside the build")
        # Arguments and environment end up in a systemd unit file: a newline would start a directive of its own
        # (ExecStartPre=...), a quote or backslash would end or escape the Environment="..." quoting.
        for i, arg in enumerate(self.args):
            if _UNIT_UNSAFE.search(arg):
                raise ValueError(f"args[{i}]: {arg!r} contains a control character")
        for key, value in self.env.items():
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"env: {key!r} is not an environment variable name (letters, digits, '_')")
            if _UNIT_UNSAFE.search(value) or '"' in value or "\\" in value:
                raise ValueError(f"env.{key}: {value!r} contains a control character, a quote or a backslash")
        try:
            ipaddress.ip_address(self.bind)
        except ValueError:
            raise ValueError(f"bind: {self.bind!r} is not an IP address") from None
        if self.health is not None and self.health.http is not None and self.port is None:
            raise ValueError("health.http: the service needs a port for an HTTP health check")
        return self


class BundleSpec(_SpecModel):
    """A whole spec file (``apiVersion: gapseal/v1``, ``kind: Bundle``)."""

    api_version: Literal["gapseal/v1"] = Field(alias="apiVersion")
    """Schema version of the spec; only ``gapseal/v1`` exists."""
    kind: Literal["Bundle"]
    """Document kind; always ``Bundle``."""
    metadata: Metadata
    """Name, version and dates of the bundle."""
    models: list[ModelSpec] = Field(default_factory=list)
    """Model weights, each with its format detected and recorded."""
    files: list[FilesSpec] = Field(default_factory=list)
    """Plain file sets."""
    builds: list[BuildSpec] = Field(default_factory=list)
    """Hardware-specific inference builds."""
    images: list[ImageSpec] = Field(default_factory=list)
    """Container images (inference servers, databases, UIs), each from an image source."""
    services: list[ServiceSpec] = Field(default_factory=list)
    """Services the installer defines as systemd units, each running a build's chosen variant."""

    def component_names(self) -> Iterator[tuple[str, str]]:
        """Yield ``(field path, name)`` of every named component, in spec order; names are unique across kinds."""
        for i, m in enumerate(self.models):
            yield f"models[{i}].name", m.name
        for i, f in enumerate(self.files):
            yield f"files[{i}].name", f.name
        for i, b in enumerate(self.builds):
            yield f"builds[{i}].name", b.name
        for i, image in enumerate(self.images):
            yield f"images[{i}].name", image.name

    def image_paths(self) -> Iterator[ComponentRef]:
        """Yield the local path of every file-based image source (``docker://`` sources have none)."""
        from gapseal.bundler.images import source_path

        for i, image in enumerate(self.images):
            path = source_path(image.source)
            if path is not None:
                yield ComponentRef("image", image.name, path, f"images[{i}].source")

    def components(self) -> Iterator[ComponentRef]:
        """Yield every path to bundle, in spec order (models, files, then each build's variants)."""
        for i, m in enumerate(self.models):
            yield ComponentRef("model", m.name, m.path, f"models[{i}].path")
        for i, f in enumerate(self.files):
            yield ComponentRef("files", f.name, f.path, f"files[{i}].path")
        for i, b in enumerate(self.builds):
            for j, v in enumerate(b.variants):
                yield ComponentRef("build", b.name, v.path, f"builds[{i}].variants[{j}].path", variant=j)

    @model_validator(mode="after")
    def _not_empty_and_unique(self) -> BundleSpec:
        seen: dict[str, str] = {}
        for field, name in self.component_names():
            if name in seen:
                raise ValueError(f"{field}: duplicate name {name!r} (already used by {seen[name]})")
            seen[name] = field
        if not seen:
            raise ValueError("the spec bundles nothing: add models, files or builds")
        names: set[str] = set()
        for i, svc in enumerate(self.services):
            if svc.name in names:
                raise ValueError(f"services[{i}].name: duplicate service name {svc.name!r}")
            names.add(svc.name)
            if svc.build not in {b.name for b in self.builds}:
                raise ValueError(f"services[{i}].build: {svc.build!r} is not a build of this spec")
            if svc.model is not None and svc.model not in {m.name for m in self.models}:
                raise ValueError(f"services[{i}].model: {svc.model!r} is not a model of this spec")
        return self


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec together with where it was read from; component paths are relative to ``directory``."""

    spec: BundleSpec
    path: Path
    """The spec file, absolute."""
    directory: Path
    """The spec's directory, absolute and with symlinks resolved."""

    def component_path(self, ref: ComponentRef) -> Path:
        """Return the absolute path of a component as written (``..`` collapsed, symlinks not resolved)."""
        return Path(os.path.normpath(self.directory / ref.path))


# ---------------------------------------------------------------------------------------------------------------------
# Loading


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_no_aliases(node: yaml.Node, path: Path) -> None:
    """Refuse YAML anchors/aliases and merge keys: a spec is read by humans, every value is written where it applies."""
    stack = [node]
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            raise SpecError(
                f"{path}:{n.start_mark.line + 1}: YAML aliases are not allowed in a spec; write the value out",
                where=str(path),
            )
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    raise SpecError(
                        f"{path}:{k.start_mark.line + 1}: YAML merge keys ('<<') are not allowed in a spec",
                        where=str(path),
                    )
                stack.extend((k, v))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(root: yaml.Node, loc: tuple[int | str, ...]) -> int | None:
    """Return the 1-based line of the node at ``loc`` (or of its deepest existing parent)."""
    node = root
    line = int(root.start_mark.line)
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    child, line = v, int(k.start_mark.line)  # the key's line: where a reader looks for the field
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = int(child.start_mark.line)
        if child is None:
            break
        node = child
    return line + 1


def _describe(err: Any) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        return "unknown field (check its spelling and indentation)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"{msg} (got {err['input']!r})"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _validation_error(path: Path, root: yaml.Node, exc: ValidationError) -> SpecError:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # An error of a union member names the member type in its loc (e.g. 'list[str]'); it is noise to a user.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        message = _describe(err)
        # Validators that check several fields name the offending one first ("variants[1]: ..."): extend the loc.
        m = _EMBEDDED_FIELD.match(message)
        if m:
            loc = loc + tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", m.group(1)) if p)
            message = message[m.end() :]
        field = _format_loc(loc)
        line = _line_of(root, loc)
        prefix = f"{path}:{line}" if line is not None else f"{path}"
        lines.append(f"{prefix}: {field}: {message}" if field else f"{prefix}: {message}")
    return SpecError("\n".join(dict.fromkeys(lines)), where=str(path), hint="fix the spec and run again")


def _check_path(loaded: LoadedSpec, ref: ComponentRef, root: yaml.Node) -> None:
    path = loaded.path
    loc = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", ref.field) if p)
    where = f"{path}:{_line_of(root, loc)}: {ref.field}"
    lexical = loaded.component_path(ref)
    if not os.path.lexists(lexical):
        raise SpecError(f"{where}: {ref.path!r} does not exist", where=str(lexical), hint="check the path")
    try:
        real = lexical.resolve(strict=True)
    except (OSError, RuntimeError) as e:  # a dangling symlink or a symlink loop
        raise SpecError(f"{where}: {ref.path!r} cannot be resolved: {e}", where=str(lexical)) from e
    if real != loaded.directory and loaded.directory not in real.parents:
        raise SpecError(
            f"{where}: {ref.path!r} resolves to {real}, outside the spec's directory {loaded.directory}",
            where=str(lexical),
            hint="move the input next to the spec file; a spec may only bundle what lies under its own directory",
        )
    if real == loaded.directory:
        raise SpecError(
            f"{where}: {ref.path!r} is the spec's own directory; name a subdirectory or file",
            where=str(lexical),
        )
    if real.is_dir():
        if not _has_entry(real):
            raise SpecError(f"{where}: {ref.path!r} is an empty directory; nothing to bundle", where=str(lexical))
    elif not real.is_file():
        raise SpecError(f"{where}: {ref.path!r} is neither a directory nor a regular file", where=str(lexical))


def _has_entry(directory: Path) -> bool:
    """Return whether ``directory`` holds anything but (empty) directories, at any depth."""
    stack = [directory]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    return True
    return False


def parse_spec(text: str, path: Path) -> tuple[BundleSpec, yaml.Node]:
    """Parse and validate spec ``text`` (read from ``path``, used in messages) without checking any path."""
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a yaml.SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(
            f"{path}{line}: invalid YAML: {e.problem or e.context}", where=str(path), hint="fix the YAML syntax"
        ) from e
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: invalid YAML: {e}", where=str(path)) from e
    if root is None or data is None:
        raise SpecError(f"{path}: the spec is empty", where=str(path))
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: the spec must be a mapping with apiVersion, kind and metadata, got {type(data).__name__}",
            where=str(path),
        )
    _check_no_aliases(root, path)
    api = data.get("apiVersion")
    if api != API_VERSION:
        raise SpecError(
            f"{path}:{_line_of(root, ('apiVersion',))}: apiVersion: "
            + (f"unsupported {api!r}" if "apiVersion" in data else "required field is missing")
            + f"; this gapseal reads {API_VERSION}",
            where=str(path),
        )
    if data.get("kind") != KIND:
        raise SpecError(
            f"{path}:{_line_of(root, ('kind',))}: kind: "
            + (f"unsupported {data.get('kind')!r}" if "kind" in data else "required field is missing")
            + f"; a bundle spec has kind {KIND}",
            where=str(path),
        )
    try:
        spec = BundleSpec.model_validate(data)
    except ValidationError as e:
        raise _validation_error(path, root, e) from e
    return spec, root


def load_spec(path: Path) -> LoadedSpec:
    """Read, validate and check the spec at ``path``: schema, names, and that every path exists inside its directory.

    Raises ``SpecError`` naming the file, line and field path for any problem.
    """
    path = Path(os.path.abspath(path))
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError as e:
        raise SpecError(f"spec {path} does not exist", where=str(path), hint="check the path") from e
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec: {e.strerror or e}", where=str(path)) from e
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes; this is not a spec", where=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start})", where=str(path)) from e
    spec, root = parse_spec(text, path)
    loaded = LoadedSpec(spec=spec, path=path, directory=path.parent.resolve())
    for ref in (*spec.components(), *spec.image_paths()):
        _check_path(loaded, ref, root)
    return loaded
