"""Policy questions: the assistant answers from the shop's facts, briefly, without refusing."""

import pytest

from pytest_llmmetrics import metrics

pytestmark = pytest.mark.llm(max_tokens=64)


def test_return_window(llm, llm_metrics, llm_snapshot, shop):
    reply = llm.chat(shop.policy_messages("How long do I have to return an item?"))
    llm_metrics.expect(
        reply,
        metrics.contains("30 days"),
        metrics.similarity("You can return items within 30 days of delivery for a full refund.", min=0.7),
        metrics.no_refusal(),
        metrics.word_count(max=40),
        metrics.language("en"),
        metrics.latency(max=30),  # seconds: generous, as CPU-only CI runners are slow and shared
        metrics.not_truncated(),
    )
    assert reply == llm_snapshot


def test_shipping_time(llm, llm_metrics, llm_snapshot, shop):
    reply = llm.chat(shop.policy_messages("How long does shipping take?"))
    llm_metrics.expect(
        reply,
        metrics.contains("2 to 4 working days"),   # the fact from the system prompt
        metrics.no_refusal(),
        metrics.tokens(max=40),
        metrics.no_prompt_leak(shop.POLICY_PROMPT, ngram=10),
    )
    assert reply == llm_snapshot                   # and it still means what it meant
