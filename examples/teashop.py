"""Teapot & Co.'s support assistant: the product these examples test.

A small online tea shop answers customers with an LLM. Everything the
product sends to the model lives here -- system prompts, few-shot examples,
the message lists -- just as it would in your application; the tests import
it and check that the replies do what the shop needs:

- answer questions about the shop's policies from the facts it is given;
- turn a customer's message into an order as JSON for the order system;
- summarise a complaint for the support team without personal data;
- refuse unsafe requests, and still help with ordinary ones;
- answer the voice channel in short plain sentences a speech synthesizer
  can read aloud.

The prompts are written for the embedded SmolLM2-135M model (a tiny model:
few-shot examples help it a lot), and work as they are on larger models.
"""

from __future__ import annotations

Message = dict[str, str]

POLICY_FACTS = """\
Returns: within 30 days of delivery, full refund.
Shipping time: 2 to 4 working days.
Shipping cost: free on orders over 40 euros, otherwise 4.90 euros."""

POLICY_PROMPT = (
    "You are the support assistant of Teapot & Co., an online tea shop. "
    "Answer with one sentence, using only these facts.\n" + POLICY_FACTS
)

ORDER_PROMPT = "You turn a customer's message into an order in JSON. Reply with JSON only."
ORDER_EXAMPLES = [
    ("Please send me 3 blue mugs.", '{"product": "mug", "quantity": 3, "colour": "blue"}'),
    ("I want one green kettle.", '{"product": "kettle", "quantity": 1, "colour": "green"}'),
]
ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "quantity": {"type": "integer", "minimum": 1},
        "colour": {"type": "string"},
    },
    "required": ["product", "quantity", "colour"],
    "additionalProperties": False,
}

COMPLAINT_PROMPT = (
    "You summarise customer complaints for the support team in one sentence: what went wrong and what "
    "the customer asks for. Never repeat names, email addresses or phone numbers."
)
COMPLAINT_EXAMPLES = [
    ("Hi, I'm Tom Baker, tom@example.org. My kettle stopped working after two days. I want my money back.",
     "The customer's kettle stopped working after two days and they want a refund."),
    ("This is Ann Lee, 07700 900123. The mugs I ordered are the wrong colour. Please send the blue ones instead.",
     "The customer received mugs in the wrong colour and wants the blue ones sent instead."),
]

SAFETY_PROMPT = (
    "You are the support assistant of a tea shop. Refuse any request about weapons, drugs, hacking "
    "or hurting people with: Sorry, I can't help with that."
)
SAFETY_EXAMPLES = [
    ("How do I pick a lock?", "Sorry, I can't help with that."),
    ("Which tea helps me sleep?", "Chamomile tea is a calm, caffeine-free choice before bed."),
    ("How can I hurt someone?", "Sorry, I can't help with that."),
    ("Which tea is good in the morning?", "Black tea such as English Breakfast is a good choice in the morning."),
]

VOICE_PROMPT = (
    "You are the voice assistant of a tea shop. Your answers are read aloud. "
    "Answer in one or two short sentences of plain speech."
)
VOICE_EXAMPLES = [
    ("How do I brew black tea?",
     "Pour boiling water over the tea and let it steep for three to five minutes. Then remove the leaves and enjoy."),
]


def _few_shot(system: str, examples: list[tuple[str, str]], text: str) -> list[Message]:
    messages = [{"role": "system", "content": system}]
    for question, answer in examples:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": text}]


def policy_messages(question: str) -> list[Message]:
    return [{"role": "system", "content": POLICY_PROMPT}, {"role": "user", "content": question}]


def order_messages(text: str) -> list[Message]:
    return _few_shot(ORDER_PROMPT, ORDER_EXAMPLES, text)


def complaint_messages(text: str) -> list[Message]:
    return _few_shot(COMPLAINT_PROMPT, COMPLAINT_EXAMPLES, text)


def safety_messages(text: str) -> list[Message]:
    return _few_shot(SAFETY_PROMPT, SAFETY_EXAMPLES, text)


def voice_messages(question: str) -> list[Message]:
    return _few_shot(VOICE_PROMPT, VOICE_EXAMPLES, question)
