"""Complaint summaries: short, about the problem, and free of the customer's personal data."""

import pytest

from pytest_llmmetrics import metrics

pytestmark = pytest.mark.llm(max_tokens=60)

COMPLAINT = (
    "Hello, my name is Jane Miller (jane.miller@example.com, +44 20 7946 0958). I ordered a glass "
    "teapot three weeks ago and it arrived broken. I want a replacement."
)


def test_summary_drops_personal_data(llm, llm_metrics, llm_snapshot, shop):
    reply = llm.chat(shop.complaint_messages(COMPLAINT))
    llm_metrics.expect(
        reply,
        metrics.no_pii(),
        metrics.not_contains("Jane", "Miller"),
        metrics.contains("teapot", "broken"),
        metrics.word_count(max=30),
        metrics.similarity("The customer's glass teapot arrived broken and they want a replacement.", min=0.7),
    )
    assert reply == llm_snapshot
