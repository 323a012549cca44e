"""The `Response` value object: one reply of the model under test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_llmmetrics.errors import ReplyError
from pytest_llmmetrics.values import is_number

# What a reply is, in the words of every error about one.
REPLY_TYPES = "a Response (what llm(...) returns) or a str"


@dataclass(frozen=True)
class Response:
    """A model reply with what the metrics need to know about it.

    ``str(response)`` is the reply text, so a `Response` can be used wherever a
    string is expected. Fields a provider cannot fill stay ``None``; a check that
    needs one of them (``latency``, ``tokens``, ``cost``, ``not_truncated``) says
    so instead of guessing. ``text`` must be a str (``""`` for no text).
    ``messages`` is the conversation that was sent (system prompt included),
    which ``metrics.judge`` shows its judge.
    """

    text: str
    model: str = ""
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)
    # The conversation that produced the reply (set by the ``llm`` fixture), for checks that read it (judge).
    messages: tuple[dict[str, str], ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ReplyError(
                f"Response.text must be a str, got {_describe(self.text)}; "
                "a reply with no text is Response(text='')"
            )
        problem = field_problem("latency_s", self.latency_s) or field_problem("prompt_tokens", self.prompt_tokens) \
            or field_problem("completion_tokens", self.completion_tokens) \
            or field_problem("finish_reason", self.finish_reason)
        if problem:
            raise ReplyError(f"Response.{problem}")

    def __str__(self) -> str:
        return self.text

    @property
    def total_tokens(self) -> int | None:
        """Prompt plus completion tokens, or ``None`` when either is unknown."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with a reply field's value (None: nothing); one rule for replies and recordings."""
    if value is None:
        return None
    if name == "finish_reason":
        return None if isinstance(value, str) else f"finish_reason must be a str or None, got {_describe(value)}"
    if name == "latency_s":
        ok = is_number(value) and value >= 0
        return None if ok else f"latency_s must be a number of seconds >= 0 or None, got {_describe(value)}"
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else f"{name} must be an int >= 0 or None, got {_describe(value)}"


def as_response(reply: object, where: str = "the reply", *, or_list: bool = False) -> Response:
    """Accept a `Response` or a plain string wherever a reply is expected; else a `ReplyError` naming ``where``.

    ``or_list``: the caller also takes a list of replies (samples), and the message says so.
    """
    if isinstance(reply, Response):
        return reply
    if isinstance(reply, str):
        return Response(text=reply)
    takes = REPLY_TYPES + (", or a non-empty list of them (samples)" if or_list else "")
    raise ReplyError(f"{where} must be {takes}; got {_describe(reply)}")


def _describe(value: object) -> str:
    """``NoneType (None)``: the type and a short repr, for messages about a value of the wrong type."""
    return f"{type(value).__name__} ({value!r:.80})"
