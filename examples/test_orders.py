"""Order extraction: the order system needs exactly this JSON, nothing around it.

The cases live in ``cases/orders.jsonl`` (one per line: the customer's message and the
order it should become), so the people who know the orders can add cases without
touching Python.
"""

import pytest

from pytest_llmmetrics import cases, metrics

pytestmark = pytest.mark.llm(max_tokens=48)


@pytest.mark.parametrize("case", cases("cases/orders.jsonl"))
def test_order_as_json(llm, llm_metrics, shop, case):
    reply = llm.chat(shop.order_messages(case["message"]))
    llm_metrics.expect(
        reply,
        metrics.is_json(shop.ORDER_SCHEMA),
        metrics.json_equals(case["order"]),
        metrics.no_markdown(),
    )
