"""Complaint summaries: what went wrong and what the customer wants, without their personal data."""

import pytest

from pytest_llmmetrics import metrics

pytestmark = pytest.mark.llm(max_tokens=60)

COMPLAINTS = {
    "broken-teapot": (
        "Hello, my name is Jane Miller (jane.miller@example.com, +44 20 7946 0958). I ordered a glass "
        "teapot three weeks ago and it arrived broken. I want a replacement.",
        ("teapot", "broken", "replacement"),
        ("Jane", "Miller"),
    ),
    "late-order": (
        "Dear shop, I am Paul Smith (paul.smith@example.net). My tea order arrived two weeks late and the "
        "box was wet. I want a refund.",
        ("late", "refund"),
        ("Paul", "Smith"),
    ),
}


@pytest.mark.parametrize("case", COMPLAINTS)
def test_summary_keeps_the_facts_and_drops_personal_data(llm, llm_metrics, llm_snapshot, shop, case):
    complaint, facts, names = COMPLAINTS[case]
    reply = llm.chat(shop.complaint_messages(complaint))
    llm_metrics.expect(
        reply,
        metrics.contains(*facts),        # the problem and what the customer asks for
        metrics.not_contains(*names),
        metrics.no_pii(),                # no email address or phone number
        metrics.word_count(max=30),
    )
    assert reply == llm_snapshot
