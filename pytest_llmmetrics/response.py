"""The `Response` value object: one reply of the model under test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Response:
    """A model reply with what the metrics need to know about it.

    ``str(response)`` is the reply text, so a `Response` can be used wherever a
    string is expected. Fields a provider cannot fill stay ``None``; a check that
    needs one of them (``latency``, ``tokens``, ``cost``, ``not_truncated``) says
    so instead of guessing.
    """

    text: str
    model: str = ""
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.text

    @property
    def total_tokens(self) -> int | None:
        """Prompt plus completion tokens, or ``None`` when either is unknown."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


def as_response(reply: object) -> Response:
    """Accept a `Response` or a plain string wherever a reply is expected."""
    if isinstance(reply, Response):
        return reply
    if isinstance(reply, str):
        return Response(text=reply)
    raise TypeError(
        f"expected a Response or a str as the reply, got {type(reply).__name__}: "
        "pass the value returned by llm(...) or its text"
    )
