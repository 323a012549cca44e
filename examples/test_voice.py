"""Voice channel: replies are read aloud, so they must be short plain speech -- in (almost) every sample."""

import pytest
from conftest import sentence_count, speakable

from pytest_llmmetrics import metrics


@pytest.mark.llm(temperature=0.7, seed=0, max_tokens=48)
def test_voice_answers_are_speakable(llm, llm_metrics, shop):
    # Five samples at temperature 0.7 (seeds 0..4): the voice channel's answers vary, its format must not.
    replies = llm.sample(shop.voice_messages("What can I do if my order is late?"), n=5)
    llm_metrics.expect(replies, speakable(), sentence_count(), metrics.no_markdown(), pass_rate=0.8)
    llm_metrics.expect(replies, metrics.contains("order", ignore_case=True), pass_rate=0.8)
