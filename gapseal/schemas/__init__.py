"""Every published JSON Schema of gapseal, in one place: the files it reads and the documents it writes.

One directory (this package, shipped in the wheel) holds every ``*.schema.json``; ``PUBLISHED`` says which model each
comes from. Regenerate them explicitly after a model change with ``python -m gapseal.schemas`` (``--check`` only
compares); ``tests/unit/test_schemas.py`` fails while a published file and its model disagree.

Files gapseal reads: the bundle spec (``spec.v1``), ``trust.yaml`` (``trust.v1``), the waivers file (``waivers.v1``),
the site file (``site.v1``); all start with ``apiVersion: gapseal/v1`` and their ``kind`` (gapseal.documents).
Documents it writes: every ``--json`` output that is a document of its own carries ``kind`` and ``version``
(install report, hosts status, uninstall report, bundle diff, the error document every command prints on failure),
the install record on each host, the facts, the audit results, and the parts list of a split set
(``gapseal-parts.json`` in its first part and ``NAME.parts.json`` beside it: version 2 is written, 1 still read).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMAS_DIR = Path(__file__).resolve().parent
DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://gapseal.invalid/schemas/"


class ErrorDocument(BaseModel):
    """What every command prints with ``--json`` when it fails (``GapsealError.as_dict``); the exit code matches."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    kind: Literal["gapseal.Error"]
    """Always ``gapseal.Error``."""
    version: Literal[1]
    """Format version."""
    ok: Literal[False]
    """Always false."""
    error: str
    """The error type, e.g. ``VerificationError``, ``UsageError``."""
    message: str
    """The cause, one sentence (several problems are summarized here and listed in ``problems``)."""
    problems: list[str] = Field(min_length=1)
    """Every problem found, one entry each; one entry when there is one."""
    exit_code: int = Field(ge=1, le=3)
    """The exit code: 1 error or verification failure, 2 usage (arguments, existing outputs)."""
    where: str | None = None
    """The file, digest or host concerned."""
    hint: str | None = None
    """What to do next."""


def _spec() -> dict[str, Any]:
    from gapseal.bundler.spec import BundleSpec

    return BundleSpec.model_json_schema(by_alias=True)


def _trust() -> dict[str, Any]:
    from gapseal.signing.trust import trust_schema

    return trust_schema()


def _waivers() -> dict[str, Any]:
    from gapseal.audit.waivers import WaiversFile

    return WaiversFile.model_json_schema(by_alias=True)


def _site() -> dict[str, Any]:
    from gapseal.audit.site import Site

    return Site.model_json_schema(by_alias=True)


def _facts() -> dict[str, Any]:
    from gapseal.audit.schemas import facts_schema

    return facts_schema()


def _results() -> dict[str, Any]:
    from gapseal.audit.results import results_json_schema

    return dict(results_json_schema())


def _record() -> dict[str, Any]:
    from gapseal.installer.record import record_schema

    return record_schema()


def _install_report() -> dict[str, Any]:
    from gapseal.installer.report import report_schema

    return report_schema()


def _hardware() -> dict[str, Any]:
    from gapseal.installer.hardware import hardware_schema

    return hardware_schema()


def _selection() -> dict[str, Any]:
    from gapseal.installer.variants import selection_schema

    return selection_schema()


def _hosts_status() -> dict[str, Any]:
    from gapseal.installer.status import HostsStatus

    return HostsStatus.model_json_schema()


def _uninstall() -> dict[str, Any]:
    from gapseal.installer.uninstall import UninstallReport

    return UninstallReport.model_json_schema()


def _diff() -> dict[str, Any]:
    from gapseal.bundler.diff import BundleDiff

    return BundleDiff.model_json_schema()


def _parts() -> dict[str, Any]:
    from gapseal.bundler.archive import PartsList

    return PartsList.model_json_schema()


def _error() -> dict[str, Any]:
    return ErrorDocument.model_json_schema()


PUBLISHED: dict[str, Callable[[], dict[str, Any]]] = {
    # files gapseal reads
    "spec.v1.schema.json": _spec,
    "trust.v1.schema.json": _trust,
    "waivers.v1.schema.json": _waivers,
    "site.v1.schema.json": _site,
    # documents gapseal writes
    "facts.v1.schema.json": _facts,
    "results.v1.schema.json": _results,
    "installed-record.v1.schema.json": _record,
    "install-report.v1.schema.json": _install_report,
    "host-hardware.v1.schema.json": _hardware,
    "variant-selection.v1.schema.json": _selection,
    "hosts-status.v1.schema.json": _hosts_status,
    "uninstall-report.v1.schema.json": _uninstall,
    "bundle-diff.v1.schema.json": _diff,
    "parts.v2.schema.json": _parts,
    "error.v1.schema.json": _error,
}
"""File name -> the model's JSON Schema."""


def schema(name: str) -> dict[str, Any]:
    """Return the published schema ``name`` (draft 2020-12, with its ``$id``)."""
    body = {k: v for k, v in PUBLISHED[name]().items() if k not in ("$schema", "$id")}
    return {"$schema": DRAFT, "$id": ID_BASE + name, **body}


def render(name: str) -> str:
    """Return the published text of ``name``: sorted keys, two-space indent, final newline."""
    return json.dumps(schema(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def path(name: str) -> Path:
    """Where ``name`` is published (inside the package, so it ships in the wheel)."""
    if name not in PUBLISHED:
        raise KeyError(f"no published schema {name!r}")
    return SCHEMAS_DIR / name


def stale() -> list[str]:
    """Names whose published file is missing or differs from its model."""
    return [n for n in PUBLISHED if not path(n).is_file() or path(n).read_text(encoding="utf-8") != render(n)]


def main(argv: list[str] | None = None) -> int:
    """``python -m gapseal.schemas [--check]``: write every published schema, or only compare (exit 1 if stale)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        names = stale()
        for n in names:
            sys.stderr.write(f"stale: {path(n)} (run python -m gapseal.schemas)\n")
        return 1 if names else 0
    if args:
        sys.stderr.write("usage: python -m gapseal.schemas [--check]\n")
        return 2
    for n in PUBLISHED:
        path(n).write_text(render(n), encoding="utf-8")
        sys.stdout.write(f"wrote {path(n)}\n")
    return 0
