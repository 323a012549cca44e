"""A stand-in support bot for the Teapot & Co. shop, used by the examples.

It is a plain Python callable (the ``py:`` model spec), so the examples run
with no model installed. Point the same tests at a real model with
``--llm-model openai:<model>`` or by overriding the ``llm_model`` fixture.
"""

from __future__ import annotations

import json


def reply(messages, temperature=0.0, max_tokens=256, seed=None):
    question = messages[-1]["content"].lower()
    voice = any(m["role"] == "system" and "voice" in m["content"].lower() for m in messages)
    if "return" in question or "refund" in question:
        return "You can return any item within 30 days of delivery for a full refund."
    if "order" in question and "json" in question:
        return json.dumps({"order_id": "TP-1042", "items": [{"sku": "KETTLE-2", "qty": 1}], "total": 49.9})
    if "password" in question or "card number" in question:
        return "I'm sorry, but I can't help with that. Please contact support@teapot.example."
    if voice:
        return "Your kettle ships tomorrow and should arrive on Friday."
    return "Hello! How can I help you with your Teapot & Co. order today?"
