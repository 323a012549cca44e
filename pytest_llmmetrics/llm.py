"""The object behind the ``llm`` fixture: prompts in, `Response` objects out."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.markers import LLMSettings, apply, validate_kwargs
from pytest_llmmetrics.providers.call import acall_model, call_model
from pytest_llmmetrics.providers.spec import model_name
from pytest_llmmetrics.response import Response

ROLES = ("system", "user", "assistant", "tool", "developer")


def check_messages(messages: Any, who: str = "llm") -> list[dict[str, str]]:
    """Chat messages as a list of ``{"role", "content"}`` dicts, or a `ConfigError` saying what is off."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ConfigError(
            f"{who}.chat() takes a non-empty list of messages like [{{'role': 'user', 'content': 'Hi'}}]; "
            f"for a single prompt call {'await ' if who == 'allm' else ''}{who}('Hi')"
        )
    checked = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or "role" not in msg or "content" not in msg:
            raise ConfigError(f"{who}.chat(): message {i} must be a dict with 'role' and 'content', got {msg!r}")
        if msg["role"] not in ROLES:
            raise ConfigError(f"{who}.chat(): message {i} has role {msg['role']!r}; use one of {', '.join(ROLES)}")
        if not isinstance(msg["content"], str):
            raise ConfigError(f"{who}.chat(): message {i} content must be a string, got {msg['content']!r}")
        checked.append(dict(msg))
    return checked


class LLM:
    """The model under test, bound to this test's settings (marker -> CLI -> ini -> default).

    ``llm(prompt)`` sends one user message (after the marker's ``system``
    prompt, if any); ``llm.chat(messages)`` sends a conversation;
    ``llm.sample(prompt, n)`` returns n replies. Keyword overrides take the
    marker's arguments: ``llm("Hi", temperature=0.7, max_tokens=50)``.
    ``timeout``: seconds to wait for one answer (``--llm-timeout``), None for no limit.
    """

    def __init__(self, model: Any, settings: LLMSettings, on_send: Any = None, timeout: float | None = None,
                 on_reply: Any = None) -> None:
        self.model = model
        self.settings = settings
        self.name = model_name(model)
        self.timeout = timeout
        self._on_send = on_send  # (model name, params, messages) -> None, for fingerprints
        self._on_reply = on_reply  # (Response) -> None, for the model matrix's latency, tokens and cost

    def __repr__(self) -> str:
        return f"<llm {self.name} temperature={self.settings.temperature} max_tokens={self.settings.max_tokens}>"

    def __call__(self, prompt: str, **overrides: Any) -> Response:
        if not isinstance(prompt, str):
            raise ConfigError(f"llm() takes the prompt as a string, got {type(prompt).__name__}")
        return self.chat([{"role": "user", "content": prompt}], **overrides)

    def chat(self, messages: Sequence[Mapping[str, str]], **overrides: Any) -> Response:
        settings = self._settings(overrides)
        return self._send(self._messages(messages, settings), settings)

    def sample(self, prompt: str | Sequence[Mapping[str, str]], n: int, **overrides: Any) -> list[Response]:
        """``n`` replies to one prompt (or one list of chat messages), e.g. at temperature > 0 for pass rates.

        With a ``seed``, sample i uses ``seed + i``: the samples differ, and the
        same run gives the same samples. A model that answers requests in
        parallel (``max_concurrency`` > 1, e.g. ``openai:`` servers, bounded by
        ``llm_concurrency``) gets the n requests at once; replies keep their order.
        The first sample that fails (or times out) fails the call, and samples not
        yet sent are not sent.
        """
        messages, each, workers = self._samples(prompt, n, overrides, "llm")
        if workers == 1:
            return [self._call(messages, params) for params in each]
        # A server model (openai:) answers several requests at once: send them together, bounded.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-sample") as pool:
            futures = [pool.submit(self._call, messages, params) for params in each]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for future in futures:
                    future.cancel()  # those not started yet; the others end within the timeout
                raise

    def _samples(self, prompt: str | Sequence[Mapping[str, str]], n: int, overrides: Mapping[str, Any],
                 who: str) -> tuple[list[dict[str, str]], list[dict[str, Any]], int]:
        """What ``sample`` sends (for ``llm`` and ``allm``): the messages, each sample's parameters (seed + i),
        and how many at once; the call is noted once, as the test wrote it (its seed, n)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{who}.sample(): n must be an int >= 1, got {n!r}")
        settings = self._settings(overrides, who)
        conversation = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        messages = self._messages(conversation, settings, who)
        each = [(settings if settings.seed is None else dataclasses.replace(settings, seed=settings.seed + i))
                .call_params() for i in range(n)]
        self._note(messages, settings, samples=n)
        return messages, each, min(n, int(getattr(self.model, "max_concurrency", 1) or 1))

    def _settings(self, overrides: Mapping[str, Any], who: str = "llm") -> LLMSettings:
        if not overrides:
            return self.settings
        if "model" in overrides:
            raise ConfigError("llm(): the model cannot be overridden per call; use @pytest.mark.llm(model=...)")
        validate_kwargs(overrides, f"{who}() override")
        return apply(self.settings, overrides)

    def _messages(self, messages: Sequence[Mapping[str, str]], settings: LLMSettings,
                  who: str = "llm") -> list[dict[str, str]]:
        checked = check_messages(messages, who)
        if settings.system is not None and checked[0]["role"] != "system":
            checked.insert(0, {"role": "system", "content": settings.system})
        return checked

    def _send(self, messages: list[dict[str, str]], settings: LLMSettings) -> Response:
        return self._call(messages, self._note(messages, settings))

    def _note(self, messages: list[dict[str, str]], settings: LLMSettings,
              samples: int | None = None) -> dict[str, Any]:
        params = settings.call_params()
        if self._on_send is not None:
            self._on_send(self.name, params if samples is None else {**params, "samples": samples}, messages)
        return params

    def _call(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Response:
        response = call_model(self.model, self.name, messages, params, self.timeout)
        return self._received(response, messages)

    def _received(self, response: Response, messages: list[dict[str, str]]) -> Response:
        if self._on_reply is not None:
            self._on_reply(response)
        return dataclasses.replace(response, messages=tuple(dict(m) for m in messages))


class AsyncLLM:
    """The object behind the ``allm`` fixture: `LLM`'s methods as coroutines, on the test's event loop.

    ``await allm(prompt)``, ``await allm.chat(messages)``, ``await allm.sample(prompt, n)``
    take the same arguments and settings as ``llm`` and give the same replies; recordings,
    timeouts, retries and fingerprints are shared with it. ``openai:`` models use the
    official async client, ``async def`` ``py:`` models are awaited, and the rest
    (``local``, sync ``py:`` models) run in a worker thread, so the loop is never blocked.
    It starts no event loop of its own: it runs in tests that pytest-asyncio or anyio's
    pytest plugin runs (asyncio, or trio through anyio).
    """

    def __init__(self, llm: LLM) -> None:
        self._llm = llm
        self.name = llm.name
        self.settings = llm.settings

    def __repr__(self) -> str:
        return "<allm" + repr(self._llm)[len("<llm"):]

    async def __call__(self, prompt: str, **overrides: Any) -> Response:
        if not isinstance(prompt, str):
            raise ConfigError(f"allm() takes the prompt as a string, got {type(prompt).__name__}")
        return await self.chat([{"role": "user", "content": prompt}], **overrides)

    async def chat(self, messages: Sequence[Mapping[str, str]], **overrides: Any) -> Response:
        llm = self._llm
        settings = llm._settings(overrides, "allm")
        checked = llm._messages(messages, settings, "allm")
        return await self._call(checked, llm._note(checked, settings))

    async def sample(self, prompt: str | Sequence[Mapping[str, str]], n: int, **overrides: Any) -> list[Response]:
        """``n`` replies, sent at once to a model that answers in parallel (bounded by ``llm_concurrency``).

        The same seeds, order and failure rule as ``llm.sample``: the first sample that
        fails fails the call, and samples not yet sent are not sent.
        """
        import anyio

        messages, each, workers = self._llm._samples(prompt, n, overrides, "allm")
        limiter = anyio.CapacityLimiter(max(1, workers))
        replies: list[Response | None] = [None] * n
        failed: list[BaseException] = []

        async def one(i: int, params: dict[str, Any]) -> None:
            async with limiter:
                try:
                    replies[i] = await self._call(messages, params)
                except Exception as exc:  # noqa: BLE001 -- the first failure fails the call, plainly
                    failed.append(exc)
                    group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for i, params in enumerate(each):
                group.start_soon(one, i, params)
        if failed:
            raise failed[0]
        return [r for r in replies if r is not None]

    async def _call(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Response:
        llm = self._llm
        response = await acall_model(llm.model, llm.name, messages, params, llm.timeout)
        return llm._received(response, messages)
