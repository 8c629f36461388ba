"""The report in a real browser and as a PDF: Debian's headless Chromium, always in an empty network namespace.

- ``report.pdf`` is printed by ``write_evidence(pdf=True)`` (``gapseal.audit.report_pdf``), is covered by the
  attestation, names the signer and the scope, and its column headers are whole words (poppler's pdftotext reads it);
  page 1 is rendered with pdftoppm and checked for the verdict box (and kept in .pytest_cache for a human to look at).
- The printing Chromium cannot reach anything: a page that loads an image from a loopback server of this test is
  printed, and the server sees no request (the control case shows the server answers when asked directly).
- Column headers never break mid-word, measured in the laid-out page over the DevTools pipe at several widths, screen
  and print; a control page whose headers may break proves the measurement catches a break.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from gapseal.audit.report_pdf import print_pdf
from gapseal.audit.scope import ssh_fingerprint
from gapseal.audit.verify_evidence import verify_evidence
from gapseal.errors import EvidenceError
from gapseal.signing.keys import SigningKey
from tests.e2e.browser import BADGE_CHECK, HEADER_CHECK, DevTools, needs_chromium
from tests.unit.audit.evidence_full import TRUST_NAME, Full, copy_evidence, write_full

pytestmark = [pytest.mark.e2e, needs_chromium]

PDFTOTEXT = shutil.which("pdftotext")
PDFTOPPM = shutil.which("pdftoppm")
needs_poppler = pytest.mark.skipif(
    PDFTOTEXT is None or PDFTOPPM is None, reason="poppler-utils (pdftotext, pdftoppm) is needed"
)
KEEP = Path(__file__).parent.parent.parent / ".pytest_cache"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Full:
    f = write_full(tmp_path_factory.mktemp("pdf") / "ev", SigningKey.generate(), pdf=True)
    assert f.written.pdf is not None
    assert f.written.pdf.made, f.written.pdf.reason
    return f


class _Headers(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "th":
            self._in = True
            self.headers.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.headers[-1] += data


def _pdf_words(pdf: Path) -> list[str]:
    assert PDFTOTEXT is not None
    out = subprocess.run([PDFTOTEXT, "-raw", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_pdf_is_beside_the_html_and_covered_by_the_attestation(full: Full) -> None:
    pdf = full.path / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-")
    # no dead links into the directory it was printed from, no local path leaked
    assert b"file://" not in pdf.read_bytes()
    assert b".ev.tmp-" not in pdf.read_bytes()
    v = verify_evidence(full.path, [full.key.public])
    assert "report.pdf" in v.files
    assert v.predicate["report"]["pdf"]["made"] is True
    assert (
        "report.pdf: this page printed to PDF; its digest is in the attestation"
        in (full.path / "report.html").read_text()
    )


@pytest.mark.parametrize("change", ["edited", "removed", "replaced_by_html"])
def test_tampered_pdf_is_caught(full: Full, tmp_path: Path, change: str) -> None:
    ev = copy_evidence(full.path, tmp_path / "ev")
    pdf = ev / "report.pdf"
    if change == "edited":
        data = bytearray(pdf.read_bytes())
        data[len(data) // 2] ^= 1
        pdf.write_bytes(bytes(data))
        expected = "digest mismatch: report.pdf"
    elif change == "removed":
        pdf.unlink()
        expected = "missing file: report.pdf"
    else:
        shutil.copyfile(ev / "report.html", pdf)
        expected = "digest mismatch: report.pdf"
    with pytest.raises(EvidenceError, match=expected):
        verify_evidence(ev, [full.key.public])


@needs_poppler
def test_pdf_names_signer_scope_and_verdict(full: Full) -> None:
    text = " ".join(_pdf_words(full.path / "report.pdf"))
    assert TRUST_NAME in text
    assert ssh_fingerprint(full.key.public) in text.replace(" ", "")
    for words in ("Example Clinic", "radiology-llm", "J. Doe", "NOT COMPLIANT", "Debian GNU/Linux 12 (bookworm)"):
        assert words in text, words


@needs_poppler
def test_pdf_column_headers_are_whole_words(full: Full) -> None:
    """Every header's words appear, in order and unbroken, in the PDF's text (a broken 'Sever' 'ity' would not)."""
    parser = _Headers()
    parser.feed((full.path / "report.html").read_text())
    words = _pdf_words(full.path / "report.pdf")
    text = " " + " ".join(words) + " "
    headers = {" ".join(h.split()) for h in parser.headers if h.strip()}
    assert len(headers) > 20
    missing = sorted(h for h in headers if f" {h} " not in text)
    assert missing == []


@needs_poppler
def test_pdf_first_page_renders_the_verdict(full: Full, tmp_path: Path) -> None:
    assert PDFTOPPM is not None
    subprocess.run(
        [PDFTOPPM, "-r", "60", "-png", "-f", "1", "-l", "1", str(full.path / "report.pdf"), str(tmp_path / "p")],
        check=True,
    )
    page = next(tmp_path.glob("p-*1.png"))
    image = Image.open(page).convert("RGB")
    width, height = image.size
    assert width < height  # A4 portrait
    data = image.tobytes()
    pixels = [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]
    red_box = sum(1 for r, g, b in pixels if abs(r - 0xFF) < 6 and abs(g - 0xEB) < 6 and abs(b - 0xE9) < 6)
    dark_text = sum(1 for r, g, b in pixels if r + g + b < 200)
    assert red_box > 2000, red_box  # the NOT COMPLIANT box's background (#ffebe9)
    assert dark_text > 2000, dark_text  # text, not a blank page
    KEEP.mkdir(exist_ok=True)
    shutil.copyfile(page, KEEP / "report-pdf-page1.png")


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        _Recorder.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[int]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_printing_chromium_cannot_reach_the_network(loopback_server: int, tmp_path: Path) -> None:
    """A page without CSP that loads an image from this test's loopback server: printing it sends no request."""
    url = f"http://127.0.0.1:{loopback_server}/pixel.png"
    page = tmp_path / "leaky.html"
    page.write_text(f'<!DOCTYPE html><html><body><h1>leak?</h1><img src="{url}"></body></html>')
    outcome = print_pdf(page)
    assert outcome.made, outcome.reason
    assert _Recorder.seen == []
    # control: the server does answer a request that can reach it
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback URL built above
        assert r.status == 200
    assert _Recorder.seen == ["/pixel.png"]


@pytest.fixture(scope="module")
def devtools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    with DevTools(tmp_path_factory.mktemp("devtools")) as dt:
        yield dt


@pytest.mark.parametrize(
    ("width", "media"),
    [(1200, "screen"), (901, "screen"), (800, "screen"), (480, "screen"), (360, "screen"), (703, "print")],
)
def test_column_headers_never_break_mid_word(full: Full, devtools: DevTools, width: int, media: str) -> None:
    """703 CSS px is A4's width less the 12 mm margins, laid out with the print stylesheet."""
    devtools.open((full.path / "report.html").as_uri(), width=width, media=media)
    found = devtools.evaluate(HEADER_CHECK)
    assert found["headers"] > 20
    assert found["broken"] == []
    assert found["overflowing"] == []
    assert devtools.evaluate(BADGE_CHECK) == []  # status badges stay inside their cells


def test_control_a_header_that_breaks_mid_word_is_caught(devtools: DevTools, tmp_path: Path) -> None:
    page = tmp_path / "narrow.html"
    page.write_text(
        "<!DOCTYPE html><html><body><table style='table-layout:fixed;width:120px'><tr>"
        "<th style='overflow-wrap:anywhere;width:40px'>Remediation</th><th>x</th></tr></table></body></html>"
    )
    devtools.open(page.as_uri(), width=400)
    assert devtools.evaluate(HEADER_CHECK)["broken"] == ["Remediation"]


def test_cli_audit_run_prints_the_pdf_and_verify_accepts_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``gapseal audit run`` as a user runs it (PDF on by default), then ``gapseal evidence verify``."""
    import json

    from gapseal.cli import main
    from gapseal.signing.keys import write_key_pair

    priv, pub = write_key_pair(SigningKey.generate(), tmp_path / "aud", None)
    root = tmp_path / "root"
    root.mkdir()
    out = tmp_path / "ev"
    rc = main(["audit", "run", "--root", str(root), "--out", str(out), "--key", str(priv), "--json"])
    assert rc == 3  # an empty root cannot be compliant
    doc = json.loads(capsys.readouterr().out)
    assert doc["report_pdf"]["made"] is True
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert main(["evidence", "verify", str(out), "--key", str(pub)]) == 0
    assert "evidence verified" in capsys.readouterr().out
