"""The PDF print of the report: headless Chromium ``--print-to-pdf``, run inside an empty network namespace.

The report loads nothing (its CSP forbids it), but Chromium itself fetches things in the background (component
updates, safe browsing); so it never runs where it could reach a network. ``unshare --net`` gives it a fresh network
namespace holding only a loopback interface that is down; without root, ``unshare --user --map-root-user --net``
does the same in a user namespace. When neither works, or Chromium is not installed, no PDF is made: the audit goes
on with the HTML report, and the outcome (``PdfOutcome``) says why, for the CLI to print and the attestation to record.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser")
"""Executables tried, in order (Debian's package installs ``chromium``)."""

PRINT_TIMEOUT = 180.0
"""Seconds Chromium may take to print; a report of thousands of findings prints in well under a minute."""

_FLAGS = (
    "--headless",
    "--no-sandbox",  # the namespace is the fence; Chromium's sandbox needs user namespaces of its own
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--no-pings",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--no-pdf-header-footer",
    "--run-all-compositor-stages-before-draw",
)


@dataclass(frozen=True)
class PdfOutcome:
    """Whether the PDF was made, and why not when it was not."""

    made: bool
    reason: str | None = None
    """Why no PDF was made (Chromium missing, no network namespace, Chromium failed)."""
    chromium: str | None = None
    """The Chromium executable used."""
    data: bytes | None = field(default=None, repr=False)
    """The PDF's bytes, when made."""

    def as_data(self) -> dict[str, object]:
        """The outcome as the attestation predicate records it."""
        return {"made": self.made, "reason": self.reason, "chromium": self.chromium}


def find_chromium() -> str | None:
    """The Chromium executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _isolation() -> list[str] | None:
    """The ``unshare`` prefix that puts Chromium in an empty network namespace, or None when none is available."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    candidates = [[unshare, "--net"]] if os.geteuid() == 0 else []
    candidates.append([unshare, "--user", "--map-root-user", "--net"])
    for prefix in candidates:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return prefix
    return None


def print_pdf(html: Path | bytes) -> PdfOutcome:
    """Print ``html`` (a file, or the page's bytes) with headless Chromium in an empty network namespace.

    The PDF's bytes are in the outcome. Never raises for a missing tool or a failed print: the outcome says why no
    PDF was made.
    """
    chromium = find_chromium()
    if chromium is None:
        return PdfOutcome(False, "chromium is not installed (Debian package 'chromium'): no PDF was made")
    prefix = _isolation()
    if prefix is None:
        return PdfOutcome(
            False,
            "cannot create an empty network namespace for chromium (unshare --net needs root or user namespaces): "
            "no PDF was made",
            chromium,
        )
    with tempfile.TemporaryDirectory(prefix="gapseal-pdf-") as profile:
        out = Path(profile) / "report.pdf"
        if isinstance(html, bytes):
            page = Path(profile) / "report.html"
            page.write_bytes(html)
            html = page
        argv = [
            *prefix,
            chromium,
            *_FLAGS,
            f"--user-data-dir={profile}/chromium",
            f"--print-to-pdf={out}",
            html.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=PRINT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return PdfOutcome(False, f"chromium did not finish printing within {PRINT_TIMEOUT:.0f} s", chromium)
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:300]
            return PdfOutcome(False, f"chromium failed to print (exit {proc.returncode}): {tail}", chromium)
        data = out.read_bytes()
    if not data.startswith(b"%PDF-"):
        return PdfOutcome(False, "chromium wrote something that is not a PDF", chromium)
    return PdfOutcome(True, None, chromium, data)
