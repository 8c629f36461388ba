"""report.html in a real browser: Debian's headless Chromium renders it, takes a screenshot, and makes no request.

Chromium runs inside a fresh network namespace (``unshare --net``: only a loopback interface, down), so nothing it
tries can leave this machine; the browser's own background fetches (component updater) are then visible in its
net log as failing requests initiated by the browser itself ("not an origin"). The test requires that no request was
initiated by the page, and a control case proves the net log does catch a page's request.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from PIL import Image

from gapseal.audit.evidence import REPORT_FILE, write_evidence
from gapseal.signing.keys import SigningKey
from tests.e2e.browser import BADGE_CHECK, HEADER_CHECK, DevTools, needs_chromium, page_requests, run_chromium
from tests.unit.audit.evidence_fixtures import CONTROLS, compliant_rules, leaky_rules, make_facts, make_results

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 1200, 1600


def _chromium(tmp: Path, url: str, *extra: str) -> tuple[str, list[dict[str, object]]]:
    return run_chromium(tmp, url, *extra, size=(WIDTH, HEIGHT))


def _page_requests(requests: list[dict[str, object]]) -> list[str]:
    return page_requests(requests)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "ev"
    h1 = make_facts("h1", manifest_digest="sha256:" + "cd" * 32)
    h2 = make_facts("h2")
    results = make_results([(h1, leaky_rules()), (h2, compliant_rules())])
    write_evidence(out, hosts=[h1, h2], results=results, controls=CONTROLS, key=SigningKey.generate())
    return out / REPORT_FILE


@needs_chromium
def test_report_renders_with_summary_and_makes_no_request(report: Path, tmp_path: Path) -> None:
    dom, requests = _chromium(tmp_path, report.as_uri(), "--dump-dom")
    assert "NOT COMPLIANT: 1 failed and 1 unknown rule result(s) on 2 host(s)." in dom
    assert "gapseal evidence verify ev --key AUDITOR.pub" in dom
    # the hostile fact string is text in the DOM, not an element
    assert "&lt;script&gt;alert" in dom
    assert "<script>" not in dom
    assert _page_requests(requests) == []


@needs_chromium
def test_report_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _, requests = _chromium(tmp_path, report.as_uri(), f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(data) > 50_000  # a rendered page of tables, not a blank canvas
    assert _page_requests(requests) == []
    # What a reader sees first: the red NOT COMPLIANT box (#ffebe9 on #cf222e) near the top, then tables of text.
    image = Image.open(shot).convert("RGB")
    top = image.crop((0, 0, WIDTH, HEIGHT // 2)).tobytes()
    rgb = [(top[i], top[i + 1], top[i + 2]) for i in range(0, len(top), 3)]
    box = sum(1 for p in rgb if p == (0xFF, 0xEB, 0xE9))
    border = sum(1 for r, g, b in rgb if abs(r - 0xCF) < 8 and abs(g - 0x22) < 8 and abs(b - 0x2E) < 8)
    assert box > 20_000, box
    assert border > 500, border
    assert sum(1 for p in rgb if sum(p) < 150) > 5_000  # dark text
    keep = Path(__file__).parent.parent.parent / ".pytest_cache" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep)


@needs_chromium
def test_control_a_page_request_is_caught(tmp_path: Path) -> None:
    """Proves the detector works: a page without CSP that loads an image is seen requesting it (loopback only)."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>')
    _, requests = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert _page_requests(requests) == ["http://127.0.0.1:9/pixel.png"]


@needs_chromium
def test_csp_blocks_an_injected_request(tmp_path: Path, report: Path) -> None:
    """Defence in depth: even markup that slipped past escaping could not load anything under the page's CSP."""
    html = report.read_text().replace("</body>", '<img src="http://127.0.0.1:9/pixel.png"></body>')
    page = tmp_path / "injected.html"
    page.write_text(html)
    _, requests = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert _page_requests(requests) == []


@needs_chromium
@pytest.mark.parametrize(("width", "media"), [(1200, "screen"), (703, "print"), (360, "screen")])
def test_headers_whole_and_badges_inside_their_cells(report: Path, tmp_path: Path, width: int, media: str) -> None:
    """The leaky report (fail, unknown and waived badges) laid out on a wide screen, an A4 page and a phone."""
    with DevTools(tmp_path) as dt:
        dt.open(report.as_uri(), width=width, media=media)
        found = dt.evaluate(HEADER_CHECK)
        assert found["broken"] == []
        assert found["overflowing"] == []
        assert dt.evaluate(BADGE_CHECK) == []
