"""The error hierarchy: one base, one base per domain, each able to explain itself.

Every error carries what went wrong, where (a file, a digest, a host) and what to do next, so the CLI can print a
diagnosis a skeptical operator can act on. Libraries raise these; only ``gapseal.cli`` catches them.
"""

from __future__ import annotations

from collections.abc import Sequence

ERROR_KIND = "gapseal.Error"
"""The ``kind`` of the JSON document every command prints with ``--json`` when it fails."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FINDINGS = 3


class GapsealError(Exception):
    """Base of every error gapseal reports to a user."""

    exit_code: int = EXIT_ERROR

    def __init__(
        self, message: str, *, where: str | None = None, hint: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint
        self.problems = list(problems)
        """Every problem found, one entry each, when there are several (the message summarizes them)."""

    def diagnostics(self) -> str:
        """Return the cause, the place and the next step, one per line."""
        lines = [self.message]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.hint:
            lines.append(f"  next:  {self.hint}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """Return the diagnosis for ``--json`` output: ``gapseal.Error`` v1 (schema: ``gapseal/schemas``).

        ``problems`` is always a list, one entry per problem, never one joined string.
        """
        out: dict[str, object] = {
            "kind": ERROR_KIND,
            "version": 1,
            "ok": False,
            "error": type(self).__name__,
            "message": self.message,
            "problems": self.problems or [self.message],
            "exit_code": self.exit_code,
        }
        if self.where:
            out["where"] = self.where
        if self.hint:
            out["hint"] = self.hint
        return out


class UsageError(GapsealError):
    """Arguments that do not fit together, or an output that would be overwritten."""

    exit_code = EXIT_USAGE


class SigningError(GapsealError):
    """Keys, signatures and signed statements."""


class KeyLoadError(SigningError):
    """A key file that cannot be read, decrypted or is of the wrong kind."""


class SignatureError(SigningError):
    """A signature that does not verify against any trusted key, or a malformed signed document."""


class BundleError(GapsealError):
    """The bundle artifact: spec, layout, pack and unpack."""


class SpecError(BundleError):
    """A bundle spec that is invalid: unknown field, missing path, path outside the spec's directory."""


class InputError(BundleError):
    """An input file or directory that cannot be bundled (a symlink, a device, an unreadable file)."""


class ArchiveError(BundleError):
    """A tar or split set that is unsafe or damaged (absolute path, ``..``, link, device, truncation)."""


class VerificationError(BundleError):
    """A bundle that does not verify: digest, size, file set, signature, expiry or rollback."""


class InstallError(GapsealError):
    """The installer: inventory, hardware, variant selection, Ansible runs."""


class AuditError(GapsealError):
    """The auditor: collectors, policy engines, evidence."""


class EvidenceError(AuditError):
    """Evidence that does not verify: a signature, a digest, a missing or extra file."""


class OutputError(GapsealError):
    """An output that cannot be written: its directory is missing or read-only, or the disk is full."""


# One wording per situation, whichever command meets it (tests/e2e/test_cli_errors.py holds every command to it).


def output_exists(path: object) -> UsageError:
    """The error for an output that exists and ``--overwrite`` was not given (exit 2: a usage question)."""
    return UsageError(f"output {path} already exists", where=str(path), hint="choose another path or pass --overwrite")


def output_not_writable(path: object, reason: str) -> OutputError:
    """The error for an output that cannot be written (exit 1: the machine's state, not the arguments)."""
    return OutputError(
        f"cannot write output {path}: {reason}",
        where=str(path),
        hint="choose a writable directory with enough free space",
    )


class InputPathError(GapsealError):
    """An input path that is missing or of the wrong kind (a directory where a file is read, or the reverse)."""


def check_input(path: object, what: str, *, want: str = "file", hint: str | None = None) -> None:
    """Raise ``InputPathError`` when ``path`` (given as ``what``) is missing or not a ``want`` (file or directory).

    Exit 1 like any other bad input: exit 2 is kept for arguments that do not fit together and existing outputs.
    """
    from pathlib import Path

    p = Path(str(path))
    if not p.exists() and not p.is_symlink():
        raise InputPathError(f"{what} {path} does not exist", where=str(path), hint=hint or "check the path")
    if want == "file" and not p.is_file():
        raise InputPathError(f"{what} {path} is not a file", where=str(path), hint=hint)
    if want == "directory" and (not p.is_dir() or p.is_symlink()):
        raise InputPathError(f"{what} {path} is not a directory", where=str(path), hint=hint)
