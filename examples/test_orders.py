"""Order extraction: the order system needs exactly this JSON, nothing around it."""

import pytest

from pytest_llmmetrics import metrics

pytestmark = pytest.mark.llm(max_tokens=48)


@pytest.mark.parametrize(
    ("message", "order"),
    [
        ("Hi, I'd like to order 2 red teapots please.", {"product": "teapot", "quantity": 2, "colour": "red"}),
        ("Could I get 4 white cups?", {"product": "cup", "quantity": 4, "colour": "white"}),
    ],
    ids=["teapots", "cups"],
)
def test_order_as_json(llm, llm_metrics, shop, message, order):
    reply = llm.chat(shop.order_messages(message))
    llm_metrics.expect(
        reply,
        metrics.is_json(shop.ORDER_SCHEMA),
        metrics.json_equals(order),
        metrics.no_markdown(),
    )
