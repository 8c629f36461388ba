"""report.html: self-contained, escaped, summary first."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from gapseal.audit.evidence import EvidenceFile
from gapseal.audit.report import CONTENT_SECURITY_POLICY, render_report
from gapseal.audit.results import Results

from .evidence_fixtures import CONTROLS, HOSTILE, compliant_rules, leaky_rules, make_facts, make_results

VERIFY = "gapseal evidence verify ev --key AUDITOR.pub"


class _Scan(HTMLParser):
    """Collects every tag, attribute and text node."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _render(results: Results) -> str:
    files = [EvidenceFile(h.facts, h.facts_digest[7:], 1, "application/json", "facts", h.host) for h in results.hosts]
    return render_report(
        results,
        controls=CONTROLS,
        evidence_files=files,
        bundle_manifest_digests={"h1": "sha256:" + "cd" * 32},
        verify_command=VERIFY,
    )


@pytest.fixture
def leaky() -> str:
    return _render(make_results([(make_facts("h1"), leaky_rules()), (make_facts("h2"), compliant_rules())]))


def _scan(html: str) -> _Scan:
    s = _Scan()
    s.feed(html)
    return s


def test_hostile_fact_strings_are_escaped(leaky: str) -> None:
    scan = _scan(leaky)
    assert "script" not in scan.tags
    assert "img" not in scan.tags
    assert HOSTILE not in leaky
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in leaky
    assert any(HOSTILE in t for t in scan.text)  # shown to the reader as text


def test_page_loads_nothing(leaky: str) -> None:
    scan = _scan(leaky)
    assert set(scan.tags) & {"script", "img", "link", "iframe", "object", "embed", "video", "audio", "source"} == set()
    for tag, name, value in scan.attrs:
        assert name not in ("src", "srcset", "action", "formaction", "poster"), (tag, name, value)
        if name == "href":
            # in-page anchors, or relative links to files of the evidence directory itself
            assert value.startswith("#") or re.fullmatch(r"[a-z]+/[A-Za-z0-9._/-]+|[a-z.-]+\.json", value), (tag, value)
            assert not any(bad in value for bad in (":", "//", "..")), (tag, value)
    assert not re.search(r"url\(|@import|https?://", leaky.split("</style>")[0].split("<style>")[1])
    csp = [v for t, k, v in scan.attrs if t == "meta" and k == "content" and "default-src" in v]
    assert csp == [CONTENT_SECURITY_POLICY]
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY


def test_summary_comes_first_then_hosts_then_evidence_then_verify(leaky: str) -> None:
    order = [leaky.index(f'id="{i}"') for i in ("summary", "verdict", "frameworks", "hosts", "evidence", "verify")]
    assert order == sorted(order)
    assert "NOT COMPLIANT: 1 failed and 1 unknown" in leaky


def test_per_framework_and_per_control(leaky: str) -> None:
    text = " ".join(" ".join(_scan(leaky).text).split())
    # Satisfied, not satisfied, unknown, waived, not assessed
    assert "EU AI Act not-satisfied 0 1 0 1 0" in text  # art-15 failed; art-12 waived on h2 (never satisfied)
    assert "HIPAA not-satisfied 0 1 1 1 0" in text  # (e)(1) failed, (c)(1) unknown on h1, (b) waived on h2
    assert (
        "hipaa-164.312(e)(1) 45 CFR 164.312(e)(1) Transmission security not-satisfied "
        "1 passed, 1 failed, 0 unknown, 0 waived" in text
    )
    assert "h1: EGRESS-001" in text


def test_findings_with_remediation_and_waiver(leaky: str) -> None:
    text = " ".join(" ".join(_scan(leaky).text).split())
    assert "remediation of EGRESS-001" in text
    assert "central log host pending — approved by ciso@example.org, expires 2027-01-31" in text


def test_verify_command_and_hashes_shown(leaky: str) -> None:
    assert f'<pre id="verify-command">{VERIFY}</pre>' in leaky
    assert "sha256:" + "cd" * 32 in leaky


def test_compliant_verdict() -> None:
    html = _render(make_results([(make_facts("h2"), compliant_rules())]))
    assert "COMPLIANT: no rule failed and nothing is unknown on 1 host(s); 1 waived." in html
    assert "NOT COMPLIANT" not in html


def test_controls_follow_the_catalog_order(leaky: str) -> None:
    """The catalog lists article 15 before article 12 (CONTROLS): the report keeps that order, not a string sort."""
    assert leaky.index("Article 15 Accuracy") < leaky.index("Article 12 Record-keeping")
    assert leaky.index("<h3>EU AI Act: per control</h3>") < leaky.index("<h3>HIPAA: per control</h3>")


def test_rule_with_findings_lists_them_once(leaky: str) -> None:
    assert "default route via 10.231.60.1" not in leaky  # the rule's joined message is not repeated above the list
    assert "<code>default via 10.231.60.1</code>" in leaky  # the finding, with its subject


def test_printable_page_keeps_link_text_but_no_href(leaky: str) -> None:
    from gapseal.audit.report import printable

    page = printable(leaky)
    assert "href=" not in page
    assert '<a class="raw">' in page or "<a>facts/h1.json</a>" in page
    assert _scan(page).text == _scan(leaky).text  # the reader sees the same words
