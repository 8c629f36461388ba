"""The install record: what gapseal put on a host, the auditor's integrity baseline.

The ``record`` role writes ``{{ gapseal_root }}/var/lib/gapseal/installed.json`` on every host (the remote module
``playbooks/library/gapseal_record.py`` builds the same document without importing gapseal, since hosts need not
have it). This model is the contract: ``load_record`` parses and checks it, and its JSON Schema is published as
``gapseal/schemas/installed-record.v1.schema.json`` (``record_schema()``, written by ``gapseal.schemas``).

The record holds no time stamp on purpose: a second install of the same bundle writes the same bytes, so
idempotence can be checked (and the file's own mtime says when it was last written).
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gapseal.errors import InstallError
from gapseal.names import name_problem, path_problem

RECORD_KIND = "gapseal.InstalledRecord"
RECORD_VERSION = 1
RECORD_RELATIVE_PATH = "var/lib/gapseal/installed.json"
"""Where the record lives, relative to the host's ``gapseal_root``."""

_DIGEST = r"^sha256:[0-9a-f]{64}$"


class _RecordModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class RecordedBundle(_RecordModel):
    """The signed bundle the files came from."""

    name: str
    """Bundle name (from its descriptor)."""
    version: str
    """Bundle version."""
    manifest_digest: str = Field(pattern=_DIGEST)
    """Digest of the signed bundle manifest (``sha256:<hex>``): ties the host back to the signature."""
    created: str | None = None
    """When the bundle was created (RFC 3339, from the descriptor)."""


class RecordedVariant(_RecordModel):
    """The build variant chosen for this host."""

    backend: Literal["cuda", "rocm", "vulkan", "cpu"]
    """Accelerator backend of the variant."""
    arch: Literal["amd64", "arm64"]
    """CPU architecture of the variant."""
    dir: str
    """Absolute directory the variant was installed into."""


class RecordedModel(_RecordModel):
    """Where one model's weights were installed."""

    dir: str
    """Absolute directory holding the model's files (a Hugging Face-style directory)."""


class RecordedFile(_RecordModel):
    """One installed file and the digest it must keep."""

    path: str
    """Absolute path on the host."""
    digest: str = Field(pattern=_DIGEST)
    """sha256 of the content, ``sha256:<hex>``, checked on the host when it was installed."""
    size: int = Field(ge=0)
    """Size in bytes."""
    component: str
    """What the file belongs to: ``model/<name>`` or ``build/<name>/<backend>``."""


class RecordedService(_RecordModel):
    """A systemd unit the service role wrote."""

    name: str
    """Service name from the spec."""
    unit: str
    """Absolute path of the unit file."""
    state: str
    """``started``, ``enabled``, or ``not started: <why>`` (e.g. systemd is not running on the host)."""


class RecordedImage(_RecordModel):
    """A container image the images role put into the host's podman store."""

    name: str
    """Image name from the bundle."""
    digest: str = Field(pattern=_DIGEST)
    """Digest of the image's top document (manifest or index) the bundle signed, ``sha256:<hex>``."""
    reference: str
    """Where podman holds it: ``<registry>/<name>@<digest>``, or ``localhost/<name>:<version>`` from the bundle."""


class InstalledRecord(_RecordModel):
    """``installed.json``: the bundle, the chosen variants and every installed file with its digest."""

    kind: Literal["gapseal.InstalledRecord"]
    """Document kind; always ``gapseal.InstalledRecord``."""
    version: Literal[1]
    """Record format version; readers refuse other versions."""
    root: str
    """The host's ``gapseal_root`` prefix (``/`` on a real install)."""
    bundle: RecordedBundle
    """The bundle installed."""
    models: dict[str, RecordedModel]
    """Per model name, where it was installed."""
    variants: dict[str, RecordedVariant]
    """Per build name, the variant chosen for this host's hardware."""
    services: list[RecordedService] = Field(default_factory=list)
    """Service units written by the service role."""
    images: list[RecordedImage] = Field(default_factory=list)
    """Container images pulled into the host's podman store, sorted by name."""
    files: list[RecordedFile]
    """Every installed file, sorted by path."""

    @model_validator(mode="after")
    def _files_sorted_unique(self) -> InstalledRecord:
        paths = [f.path for f in self.files]
        if paths != sorted(paths):
            raise ValueError("files: must be sorted by path")
        if len(set(paths)) != len(paths):
            raise ValueError("files: a path is listed twice")
        return self

    @model_validator(mode="after")
    def _paths_under_root(self) -> InstalledRecord:
        """Every name is a safe component and every path lies under ``root``.

        The record is an audit baseline: an entry pointing elsewhere (``/etc/shadow`` in the record of a prefix
        install) must not be believed.
        """
        if not posixpath.isabs(self.root):
            raise ValueError(f"root: {self.root!r} must be an absolute path")
        for what, names in (("models", self.models), ("variants", self.variants)):
            for name in names:
                problem = name_problem(name)
                if problem is not None:
                    raise ValueError(f"{what}: {problem}")
        places = [
            *((f"models.{n}.dir", m.dir) for n, m in self.models.items()),
            *((f"variants.{n}.dir", v.dir) for n, v in self.variants.items()),
            *((f"services.{s.name}.unit", s.unit) for s in self.services),
            *((f"files.{f.path}", f.path) for f in self.files),
        ]
        for what, path in places:
            problem = _under_root(path, self.root)
            if problem is not None:
                raise ValueError(f"{what}: {problem}")
        return self


def _under_root(path: str, root: str) -> str | None:
    """Why ``path`` is not an absolute path under ``root`` (the host's paths: checked as strings), or None."""
    if not posixpath.isabs(path):
        return f"{path!r} is not an absolute path"
    problem = path_problem(path.lstrip("/") or "x")
    if problem is not None:
        return problem
    base = posixpath.normpath(root)
    if base != "/" and path != base and not path.startswith(base + "/"):
        return f"{path!r} lies outside the install root {root!r}"
    return None


def record_schema() -> dict[str, Any]:
    """Return the JSON Schema of ``installed.json``."""
    return InstalledRecord.model_json_schema()


def parse_record(data: bytes, *, where: str = "installed.json") -> InstalledRecord:
    """Parse record bytes; refuse another kind or version, an unknown field or a malformed digest."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InstallError(f"{where}: not JSON: {e}", where=where) from e
    if not isinstance(raw, dict):
        raise InstallError(f"{where}: must be a JSON object", where=where)
    if raw.get("kind") != RECORD_KIND:
        raise InstallError(f"{where}: kind is {raw.get('kind')!r}, expected {RECORD_KIND!r}", where=where)
    if raw.get("version") != RECORD_VERSION:
        raise InstallError(
            f"{where}: record version {raw.get('version')!r} is not supported (this gapseal reads {RECORD_VERSION})",
            where=where,
        )
    try:
        return InstalledRecord.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InstallError(f"{where}: {loc}: {first['msg']}", where=where) from e


def load_record(path: Path) -> InstalledRecord:
    """Read and parse ``installed.json`` at ``path``."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InstallError(f"{path}: cannot read the install record: {e.strerror or e}", where=str(path)) from e
    return parse_record(data, where=str(path))
