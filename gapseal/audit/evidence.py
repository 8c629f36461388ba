"""The evidence directory: everything an outsider needs to check an audit, signed as one.

Layout (``gapseal-evidence/v1``)::

    facts/<host>.json            the facts document of each host, byte for byte as the policies evaluated it
    raw/<host>/sha256-<hex>      every raw output stored in those facts (command output, file content), decoded
    inputs/site.yaml             the site file given (--site), byte for byte, when one was
    inputs/waivers.yaml          the waivers file given (--waivers), byte for byte, when one was
    results.json                 per host, per rule: status, findings, controls (gapseal.audit.results)
    changes.json                 new, fixed and unchanged findings since the previous evidence (--previous), if any
    assessment-results.json      the same in OSCAL 1.1 Assessment Results form, linking to the files above by hash
    report.html                  one self-contained page: signer, scope, verdict, controls, findings with their
                                 raw evidence and the command behind it, hashes
    report.pdf                   the same page printed by headless Chromium (absent when Chromium is not available;
                                 the attestation records why)
    attestation.sigstore.json    in-toto Statement v1 over every file above, DSSE, Sigstore bundle v0.3

The directory is written under a temporary name in the same parent, every file fsynced, signed, and then renamed
into place, so a reader never sees a half-written evidence directory. An existing directory is replaced only with
``overwrite=True``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gapseal.atomic import fsync_dir, write_new_file
from gapseal.audit import attest, oscal, report
from gapseal.audit.changes import Changes
from gapseal.audit.controls import assess_controls
from gapseal.audit.facts import HostFacts
from gapseal.audit.provenance import raw_path
from gapseal.audit.report_pdf import PdfOutcome, print_pdf
from gapseal.audit.results import Results
from gapseal.audit.scope import Signer, audit_scope, host_profile, signer_of
from gapseal.errors import AuditError, UsageError
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import SigningKey

FACTS_DIR = "facts"
INPUTS_DIR = "inputs"
SITE_FILE = f"{INPUTS_DIR}/site.yaml"
WAIVERS_FILE = f"{INPUTS_DIR}/waivers.yaml"
RESULTS_FILE = "results.json"
CHANGES_FILE = "changes.json"
OSCAL_FILE = "assessment-results.json"
REPORT_FILE = "report.html"
REPORT_PDF_FILE = "report.pdf"
ATTESTATION_FILE = "attestation.sigstore.json"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_RAW_KEY = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class ControlInfo:
    """One control of the catalog, as the report and OSCAL name it."""

    id: str
    """Catalog id, e.g. ``hipaa-164.312(e)(1)`` or ``eu-ai-act-art-15``."""
    framework: str
    """The framework's display name, e.g. ``EU AI Act`` or ``HIPAA``."""
    title: str
    """The control's exact name, e.g. ``45 CFR 164.312(e)(1) Transmission security``."""
    requires: str = ""
    """What the control requires, quoted from its source (the catalog's ``requires``)."""
    rationales: tuple[tuple[str, str], ...] = ()
    """(rule id, why that rule is evidence for this control), from the catalog's ``citations``."""

    def rationale(self, rule: str) -> str | None:
        """Why ``rule`` cites this control, if the catalog says."""
        return dict(self.rationales).get(rule)


@dataclass(frozen=True)
class EvidenceFile:
    """One file of the evidence directory and its digest."""

    path: str
    """Relative POSIX path inside the evidence directory."""
    sha256: str
    """Lower-case hex SHA-256 of the file's bytes."""
    size: int
    """Length in bytes."""
    media_type: str
    """IANA media type of the content."""
    description: str
    """What the file is, for the report and the OSCAL back-matter."""
    host: str | None = None
    """The host the file belongs to, if any."""


@dataclass(frozen=True)
class HostEvidence:
    """The inputs the evidence keeps for one host: its facts document as evaluated."""

    host: str
    """Host name, as in the results."""
    facts_bytes: bytes
    """The facts document's exact bytes (their sha256 must equal the results' ``facts_digest``)."""
    facts: HostFacts
    """The parsed facts (raw outputs and the install record's bundle digest are read from it)."""


@dataclass(frozen=True)
class WrittenEvidence:
    """What ``write_evidence`` produced."""

    path: Path
    files: tuple[EvidenceFile, ...]
    compliant: bool
    attestation_sha256: str
    predicate: dict[str, object] = field(repr=False)
    pdf: PdfOutcome | None = None
    """Whether the PDF print was made (None when it was not asked for)."""


def check_host_name(host: str) -> str:
    """Return ``host`` if it is usable as a file name in the evidence directory; raise ``AuditError`` otherwise."""
    if not _SAFE_NAME.match(host) or host in (".", ".."):
        raise AuditError(
            f"host name {host!r} cannot name an evidence file",
            hint="use inventory host names of letters, digits, '.', '_' and '-'",
        )
    return host


def facts_path(host: str) -> str:
    """Return where the evidence stores the facts of ``host`` (relative POSIX path)."""
    return f"{FACTS_DIR}/{check_host_name(host)}.json"


def check_output_dir(out_dir: Path, *, overwrite: bool) -> None:
    """Fail early (before collecting anything) if ``out_dir`` exists without ``overwrite`` or cannot be written."""
    if out_dir.is_symlink():
        raise UsageError(f"evidence directory is a symbolic link: {out_dir}", where=str(out_dir))
    if out_dir.exists() and not overwrite:
        raise UsageError(
            "evidence directory already exists", where=str(out_dir), hint="choose a new --out or pass --overwrite"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError("evidence path exists and is not a directory", where=str(out_dir))
    parent = out_dir.absolute().parent
    if not parent.is_dir():
        raise UsageError("parent directory of the evidence directory does not exist", where=str(parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError("cannot write in the evidence directory's parent", where=str(parent))


def _write_file(root: Path, rel: str, data: bytes, media_type: str, description: str, host: str | None) -> EvidenceFile:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new_file(path, data)
    return EvidenceFile(rel, hashlib.sha256(data).hexdigest(), len(data), media_type, description, host)


def _raw_files(root: Path, he: HostEvidence) -> list[EvidenceFile]:
    out: list[EvidenceFile] = []
    for key in sorted(he.facts.raw_outputs):
        m = _RAW_KEY.match(key)
        if m is None:
            raise AuditError(f"raw output key {key!r} is not 'sha256:<hex>'", where=f"{FACTS_DIR}/{he.host}.json")
        raw = he.facts.raw_outputs[key]
        data = raw.content.encode("utf-8") if raw.encoding == "utf-8" else base64.b64decode(raw.content, validate=True)
        if hashlib.sha256(data).hexdigest() != m.group(1) or len(data) != raw.size:
            raise AuditError(
                f"raw output {key} does not match its own digest or size", where=f"{FACTS_DIR}/{he.host}.json"
            )
        rel = raw_path(he.host, m.group(1))
        out.append(
            _write_file(
                root,
                rel,
                data,
                "text/plain; charset=utf-8" if raw.encoding == "utf-8" else "application/octet-stream",
                f"Raw output stored in the facts of {he.host} (sources with sha256 {m.group(1)[:16]}…)",
                he.host,
            )
        )
    return out


def bundle_digests(hosts: Sequence[HostEvidence]) -> dict[str, str | None]:
    """Return, per host, the bundle manifest digest its install record names (None when there is none)."""
    return {he.host: he.facts.integrity.manifest_digest for he in hosts}


@dataclass(frozen=True)
class InputFile:
    """An input of the audit kept in the evidence byte for byte (the site file, the waivers file)."""

    path: str
    """Where it goes: ``SITE_FILE`` or ``WAIVERS_FILE``."""
    data: bytes
    description: str


def input_file(path: Path, dest: str, digest: str | None, description: str) -> InputFile:
    """Read an audit input to keep in the evidence; ``digest`` (``sha256:<hex>``) is what the audit used.

    The file is read again here; if it changed since the audit read it, the evidence would keep other bytes than the
    ones the verdict rests on, so that is an error.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AuditError(f"cannot read {path} again to keep it in the evidence: {e.strerror}", where=str(path)) from e
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest is not None and actual != digest:
        raise AuditError(
            f"{path} changed while the audit ran ({actual}, read as {digest})",
            where=str(path),
            hint="run the audit again once nobody edits the file",
        )
    return InputFile(dest, data, description)


def _check_inputs(results: Results, inputs: Sequence[InputFile]) -> None:
    """The site and waivers files the results rest on must be given, byte for byte; nothing else may be."""
    given = {i.path: "sha256:" + hashlib.sha256(i.data).hexdigest() for i in inputs}
    if len(given) != len(inputs) or set(given) - {SITE_FILE, WAIVERS_FILE}:
        raise AuditError(f"unexpected evidence inputs: {', '.join(sorted(i.path for i in inputs))}")
    site = results.site.sha256 if results.site is not None and results.site.source == "file" else None
    for rel, digest, what in (
        (SITE_FILE, site, f"site file {results.site.path if results.site else ''}"),
        (WAIVERS_FILE, results.waivers_digest, "waivers file"),
    ):
        if digest is not None and rel not in given:
            raise AuditError(f"the results rest on {what} ({digest}) but it is not given to keep in the evidence")
        if rel in given and given[rel] != digest:
            raise AuditError(f"{rel} is not the file the results rest on ({given[rel]}, results: {digest})")


def write_evidence(
    out_dir: Path,
    *,
    hosts: Sequence[HostEvidence],
    results: Results,
    controls: Mapping[str, ControlInfo],
    key: SigningKey,
    overwrite: bool = False,
    verify_key_hint: str = "AUDITOR.pub",
    progress: Progress = NO_PROGRESS,
    signer: Signer | None = None,
    inputs: Sequence[InputFile] = (),
    changes: Changes | None = None,
    pdf: bool = False,
) -> WrittenEvidence:
    """Write the evidence directory ``out_dir`` for ``results`` and sign it with ``key``; atomic.

    ``signer`` names the key (default: its id and fingerprint, no name); the scope is what ``results.site`` records;
    ``inputs`` are kept under ``inputs/``; ``changes`` is the comparison with a previous run; ``pdf`` asks for a PDF
    print of the report (made only when Chromium can run in an empty network namespace; ``WrittenEvidence.pdf`` says).

    Raises ``UsageError`` if ``out_dir`` exists and ``overwrite`` is false, ``AuditError`` if the inputs disagree
    (a facts document whose digest is not the one the results were computed from, a host without facts).
    """
    check_output_dir(out_dir, overwrite=overwrite)
    signer = signer or signer_of(key.public)
    if signer.key_id != key.key_id:
        raise AuditError("the signer named for the evidence is not the signing key", hint="a bug: report it")
    by_host = {he.host: he for he in hosts}
    if len(by_host) != len(hosts):
        raise AuditError("the same host is given twice")
    for h in results.hosts:
        check_host_name(h.host)
        if h.facts != facts_path(h.host):
            raise AuditError(
                f"the results of {h.host} name their facts {h.facts!r}; the evidence stores them as "
                f"{facts_path(h.host)!r}",
                where=h.host,
                hint="evaluate with facts paths from gapseal.audit.evidence.facts_path",
            )
        he = by_host.get(h.host)
        if he is None:
            raise AuditError(f"no facts given for host {h.host} of the results", where=h.host)
        digest = "sha256:" + hashlib.sha256(he.facts_bytes).hexdigest()
        if digest != h.facts_digest:
            raise AuditError(
                f"the facts of {h.host} are not the ones the results were evaluated on ({digest} != {h.facts_digest})",
                where=h.host,
            )
    extra = set(by_host) - {h.host for h in results.hosts}
    if extra:
        raise AuditError(f"facts given for hosts without results: {', '.join(sorted(extra))}")
    _check_inputs(results, inputs)

    scope = audit_scope(results.site)
    profiles = [host_profile(h.host, by_host[h.host].facts) for h in results.hosts]
    assessments = assess_controls(results, controls)
    parent = out_dir.absolute().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    task = progress.begin("writing evidence", None)
    try:
        files: list[EvidenceFile] = []
        for h in results.hosts:
            he = by_host[h.host]
            files.append(
                _write_file(
                    tmp, facts_path(h.host), he.facts_bytes, "application/json",
                    f"Facts collected on {h.host} (gapseal facts schema v{he.facts.schema_version})", h.host,
                )
            )  # fmt: skip
            files.extend(_raw_files(tmp, he))
        for i in sorted(inputs, key=lambda i: i.path):
            files.append(_write_file(tmp, i.path, i.data, "application/yaml", i.description, None))
        results_bytes = results.to_json().encode("utf-8")
        files.append(
            _write_file(
                tmp, RESULTS_FILE, results_bytes, "application/json", "Per host, per rule results (gapseal/v1)", None
            )
        )
        if changes is not None:
            files.append(
                _write_file(
                    tmp, CHANGES_FILE, changes.to_json().encode("utf-8"), "application/json",
                    f"New, fixed and unchanged findings since {changes.previous.path}", None,
                )
            )  # fmt: skip
        document = oscal.build_assessment_results(
            results,
            controls=controls,
            evidence_files=files,
            signer=signer,
            scope=scope,
            profiles=profiles,
            facts={h.host: by_host[h.host].facts for h in results.hosts},
            changes=changes,
        )
        oscal_bytes = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        files.append(
            _write_file(tmp, OSCAL_FILE, oscal_bytes, "application/oscal.ar+json", "OSCAL 1.1 Assessment Results", None)
        )

        def render(pdf_note: str | None) -> bytes:
            return report.render_report(
                results,
                controls=controls,
                evidence_files=files,
                bundle_manifest_digests=bundle_digests(hosts),
                verify_command=f"gapseal evidence verify {out_dir.name} --key {verify_key_hint}",
                signer=signer,
                scope=scope,
                profiles=profiles,
                facts={h.host: by_host[h.host].facts for h in results.hosts},
                changes=changes,
                pdf_note=pdf_note,
            ).encode("utf-8")

        html = render(f"{REPORT_PDF_FILE}: this page printed to PDF; its digest is in the attestation" if pdf else None)
        report_path = tmp / REPORT_FILE
        write_new_file(report_path, html)
        outcome: PdfOutcome | None = None
        if pdf:
            outcome = print_pdf(report.printable(html.decode("utf-8")).encode("utf-8"))
            if outcome.made and outcome.data is not None:
                files.append(
                    _write_file(
                        tmp, REPORT_PDF_FILE, outcome.data, "application/pdf",
                        "The report printed to PDF by headless Chromium (no network)", None,
                    )
                )  # fmt: skip
            else:
                # The page must not promise a PDF that is not there: say why instead.
                report_path.unlink()
                html = render(f"no PDF was made: {outcome.reason}")
                write_new_file(report_path, html)
        files.append(
            EvidenceFile(
                REPORT_FILE,
                hashlib.sha256(html).hexdigest(),
                len(html),
                "text/html; charset=utf-8",
                "Human-readable report",
                None,
            )
        )
        predicate = attest.build_predicate(
            results,
            bundle_manifest_digests=bundle_digests(hosts),
            signer=signer,
            scope=scope,
            profiles=profiles,
            controls=assessments,
            pdf=outcome,
            changes=changes,
        )
        bundle = attest.sign_evidence(files, predicate, key)
        write_new_file(tmp / ATTESTATION_FILE, bundle)
        for d in sorted({p.parent for p in tmp.rglob("*")} | {tmp}, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
        os.chmod(tmp, 0o755)  # noqa: S103 - evidence is meant to be read by others
        _replace_dir(tmp, out_dir, overwrite=overwrite)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        progress.end(task)
    return WrittenEvidence(
        path=out_dir,
        files=tuple(files),
        compliant=results.compliant,
        attestation_sha256=hashlib.sha256(bundle).hexdigest(),
        predicate=predicate,
        pdf=outcome,
    )


def _replace_dir(tmp: Path, out_dir: Path, *, overwrite: bool) -> None:
    """Move ``tmp`` to ``out_dir``; an existing ``out_dir`` (only with ``overwrite``) is moved aside, then removed."""
    if not out_dir.exists():
        try:
            os.rename(tmp, out_dir)
        except OSError as e:
            raise AuditError(f"cannot move the evidence into place: {e.strerror}", where=str(out_dir)) from e
        return
    if not overwrite:
        raise UsageError("evidence directory already exists", where=str(out_dir), hint="pass --overwrite")
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.absolute().parent))
    os.rename(out_dir, old / "evidence")
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
