"""REPORT.md and the README block: findings first, generated from the claims, and the same verdicts in both."""

import re
from pathlib import Path

from flake_lib import claims, report

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "results" / "quick"


def test_the_report_opens_with_generated_findings_naming_every_group():
    text = report.build_report(QUICK)
    head = text.split("\n## This run", 1)[0]  # the first screen: before provenance
    verdicts = claims.all_claims(QUICK)
    assert "\n".join(report.findings(verdicts)) in head
    for title, prefixes, _ in report.FINDING_GROUPS:
        if any(v.id.startswith(prefixes) for v in verdicts):
            assert f"**{title}:" in head, title
    assert "### The paper's numbers beside ours" in head


def test_every_verdict_has_the_same_word_in_the_readme_and_the_report():
    verdicts = {v.id: v.verdict for v in claims.all_claims(QUICK)}
    readme = (REPO / "README.md").read_text()
    block = readme.split(report.README_START, 1)[1].split(report.README_END, 1)[0]
    said = dict(re.findall(r"(E\d[a-e]?|X\d) \*([a-z ]+)\*", block.split("**Verdicts:**", 1)[1]))
    for claim_id, word in said.items():
        assert verdicts[claim_id] == word, claim_id
    report_text = report.build_report(QUICK)
    for claim_id, word in verdicts.items():
        if not claim_id.startswith("E5"):
            assert f"### {claim_id} — " in report_text and f"*{word}*" in report_text


def test_findings_say_why_ours_differs_and_what_would_change_a_claim_that_fails():
    verdict = claims.Verdict("E2", "a claim", "paper", "ours", "rule", "not", "why", differs="a small model")
    lines = report.findings([verdict])
    line = next(x for x in lines if x.startswith("- **Parity models"))
    assert "does not hold" in line and "*Why ours differs:* a small model" in line and "What would change it" in line
