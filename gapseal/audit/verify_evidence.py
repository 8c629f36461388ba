"""``gapseal evidence verify``: check an evidence directory offline; fail closed, naming the file at fault.

In order: the attestation exists and is a regular file; its signature is by a trusted key and its predicate type is
the evidence predicate; the statement's subjects are well-formed relative paths, each named once; the directory
holds exactly those files (plus the attestation) — no missing file, no extra file, no symlink, no special file; and
every file's SHA-256 equals its subject's digest. Finally the signed predicate must agree with the files: the
``results.json`` verdict with the signed summary, the signer it names with the key that verified, a PDF it says was
made (or not) with ``report.pdf`` being there (or not), a comparison it records with ``changes.json``, and the site
and waivers digests with the copies under ``inputs/``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from gapseal.audit.attest import EVIDENCE_LAYOUT, EVIDENCE_PREDICATE_TYPE
from gapseal.audit.evidence import (
    ATTESTATION_FILE,
    CHANGES_FILE,
    REPORT_PDF_FILE,
    RESULTS_FILE,
    SITE_FILE,
    WAIVERS_FILE,
)
from gapseal.errors import EvidenceError, SignatureError
from gapseal.hashing import hash_file
from gapseal.signing.attestation import verify_statement
from gapseal.signing.keys import VerifyingKey

_MAX_ATTESTATION = 64 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedEvidence:
    """An evidence directory whose signature, file set and digests all verified."""

    path: Path
    files: tuple[str, ...]
    """Every verified file (relative POSIX paths), the attestation excluded."""
    compliant: bool
    """The signed verdict."""
    signer_key_id: str
    predicate: dict[str, Any] = field(repr=False)


def _fail(message: str, rel: str, hint: str | None = None) -> EvidenceError:
    return EvidenceError(message, where=rel, hint=hint)


def _check_subject_name(name: str) -> None:
    p = PurePosixPath(name)
    if (
        not name
        or name != str(p)
        or p.is_absolute()
        or any(part in ("", ".", "..") for part in p.parts)
        or "\\" in name
        or "\x00" in name
    ):
        raise _fail(f"attestation names an unsafe path {name!r}", ATTESTATION_FILE)
    if name == ATTESTATION_FILE:
        raise _fail("attestation lists itself as a subject", ATTESTATION_FILE)


def _walk(root: Path) -> dict[str, Path]:
    """Return every regular file under ``root`` by relative POSIX path; refuse links and special files."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in sorted(dirnames + filenames):
            p = d / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise _fail(f"symbolic link in evidence directory: {rel}", rel)
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise _fail(f"special file in evidence directory: {rel}", rel)
            found[rel] = p
    return found


def verify_evidence(path: Path, trusted_keys: Sequence[VerifyingKey]) -> VerifiedEvidence:
    """Verify the evidence directory at ``path`` against ``trusted_keys``; raise ``EvidenceError`` naming the file."""
    if not trusted_keys:
        raise EvidenceError("no trusted key given", hint="pass the auditor's public key with --key")
    if path.is_symlink() or not path.is_dir():
        raise EvidenceError("not an evidence directory", where=str(path))
    att = path / ATTESTATION_FILE
    if att.is_symlink() or not att.is_file():
        raise _fail(f"missing file: {ATTESTATION_FILE} (the signed attestation)", ATTESTATION_FILE)
    if att.stat().st_size > _MAX_ATTESTATION:
        raise _fail("attestation is implausibly large", ATTESTATION_FILE)
    try:
        verified = verify_statement(att.read_bytes(), trusted_keys, allowed_predicate_types=[EVIDENCE_PREDICATE_TYPE])
    except SignatureError as e:
        raise _fail(
            f"{ATTESTATION_FILE}: signature does not verify: {e.message}",
            ATTESTATION_FILE,
            hint="the evidence was not signed by the given auditor key, or the attestation was altered",
        ) from e
    predicate = verified.predicate
    if predicate.get("layout") != EVIDENCE_LAYOUT:
        raise _fail(f"unsupported evidence layout {predicate.get('layout')!r}", ATTESTATION_FILE)

    expected: dict[str, str] = {}
    for s in verified.subjects:
        _check_subject_name(s.name)
        if s.name in expected:
            raise _fail(f"attestation names {s.name} twice", ATTESTATION_FILE)
        expected[s.name] = s.sha256

    actual = _walk(path)
    actual.pop(ATTESTATION_FILE, None)
    missing = sorted(set(expected) - set(actual))
    if missing:
        raise _fail(f"missing file: {missing[0]} (listed in the signed attestation)", missing[0])
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise _fail(f"unexpected file: {extra[0]} (not in the signed attestation)", extra[0])
    for rel in sorted(expected):
        digest = hash_file(actual[rel]).sha256
        if digest != expected[rel]:
            raise _fail(f"digest mismatch: {rel} (sha256 {digest}, signed {expected[rel]})", rel)

    summary = predicate.get("summary")
    compliant = summary.get("compliant") if isinstance(summary, dict) else None
    if not isinstance(compliant, bool):
        raise _fail("attestation predicate has no summary verdict", ATTESTATION_FILE)
    if RESULTS_FILE in expected:
        try:
            doc = json.loads((path / RESULTS_FILE).read_bytes())
            results_compliant = doc["summary"]["compliant"]
        except (ValueError, KeyError, TypeError) as e:
            raise _fail(f"{RESULTS_FILE} has no summary verdict", RESULTS_FILE) from e
        if results_compliant != compliant:
            raise _fail(f"{RESULTS_FILE} verdict disagrees with the signed summary", RESULTS_FILE)
    _check_claims(predicate, expected, verified.signer_key_id, path)
    return VerifiedEvidence(
        path=path,
        files=tuple(sorted(expected)),
        compliant=compliant,
        signer_key_id=verified.signer_key_id,
        predicate=predicate,
    )


def _present(expected: dict[str, str], rel: str, should: bool, why: str) -> None:
    if should and rel not in expected:
        raise _fail(f"missing file: {rel} ({why})", rel)
    if not should and rel in expected:
        raise _fail(f"unexpected file: {rel} (the attestation says {why})", rel)


def _check_claims(predicate: dict[str, Any], expected: dict[str, str], signer_key_id: str, path: Path) -> None:
    """The predicate's statements about the signer and the files must hold (absent keys: older evidence)."""
    signer = predicate.get("signer")
    if signer is not None and (not isinstance(signer, dict) or signer.get("key_id") != signer_key_id):
        claimed = signer.get("key_id") if isinstance(signer, dict) else signer
        raise _fail(
            f"the attestation names signer key {str(claimed)[:16]}…, but key {signer_key_id[:16]}… signed it",
            ATTESTATION_FILE,
        )
    report = predicate.get("report")
    if report is not None:
        made = report.get("pdf", {}).get("made") if isinstance(report, dict) else None
        if not isinstance(made, bool):
            raise _fail("attestation predicate has a malformed report entry", ATTESTATION_FILE)
        _present(expected, REPORT_PDF_FILE, made, "a PDF was made" if made else "no PDF was made")
    if "previous" in predicate:
        compared = predicate["previous"] is not None
        _present(expected, CHANGES_FILE, compared, "a comparison was made" if compared else "none was made")
    scope = predicate.get("scope")
    site_digest = scope.get("site_digest") if isinstance(scope, dict) else None
    if scope is not None:
        _present(expected, SITE_FILE, site_digest is not None, "a site file was used" if site_digest else "none was")
        if site_digest is not None and f"sha256:{expected[SITE_FILE]}" != site_digest:
            raise _fail(f"{SITE_FILE} is not the site file the audit used ({site_digest})", SITE_FILE)
    waivers_digest = (predicate.get("policies") or {}).get("waivers")
    if scope is not None:  # evidence that keeps its inputs (older evidence has no scope and no inputs/)
        used = waivers_digest is not None
        _present(expected, WAIVERS_FILE, used, "a waivers file was applied" if used else "none was")
    if WAIVERS_FILE in expected and f"sha256:{expected[WAIVERS_FILE]}" != waivers_digest:
        raise _fail(f"{WAIVERS_FILE} is not the waivers file the audit applied ({waivers_digest})", WAIVERS_FILE)
