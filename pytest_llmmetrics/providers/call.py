"""Calling a model: its answer made a `Response`, timed, and given up on after ``--llm-timeout``."""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pytest_llmmetrics.errors import ModelError, ReplyError
from pytest_llmmetrics.response import Response


def call_model(model: Any, name: str, messages: list[dict[str, str]], params: dict[str, Any],
               timeout: float | None = None) -> Response:
    """Call a model and make its answer a `Response`, timed where the model did not time itself.

    With a ``timeout`` (``--llm-timeout``), a model that does not end its own calls
    in time (``enforces_timeout``: ``openai:``, ``local``, recorded replies) runs in
    a daemon thread and is given up on after ``timeout`` seconds: the call fails
    with a `ModelError`, and its late answer, if any, is dropped.
    """
    start = time.perf_counter()
    try:
        if timeout is None or getattr(model, "enforces_timeout", False):
            result = model(messages, **params)
        else:
            try:
                result = run_with_timeout(lambda: model(messages, **params), timeout, f"llm-call {name}")
            except TimeoutError:
                raise ModelError(
                    f"{no_answer(f'model {name}', timeout)}. The call cannot be stopped and was left running in "
                    "the background; this test fails and the run goes on. Make the model answer in time, or "
                    "raise --llm-timeout / llm_timeout"
                ) from None
    except ReplyError as exc:  # Response(text=None) made inside the model
        raise ModelError(f"model {name} returned an unusable reply: {exc}") from None
    return as_reply(result, name, time.perf_counter() - start)


def as_reply(result: Any, name: str, elapsed: float) -> Response:
    """What a model returned, as a `Response` timed by ``elapsed`` where the model did not time itself."""
    if isinstance(result, str):
        return Response(text=result, model=name, latency_s=elapsed)
    if isinstance(result, Response):
        fill: dict[str, Any] = {}
        if result.latency_s is None:
            fill["latency_s"] = elapsed
        if not result.model:
            fill["model"] = name
        return dataclasses.replace(result, **fill) if fill else result
    raise ModelError(
        f"model {name} returned {type(result).__name__} ({result!r:.80}); a model must return "
        "a str or a pytest_llmmetrics.Response"
    )


async def acall_model(model: Any, name: str, messages: list[dict[str, str]], params: dict[str, Any],
                      timeout: float | None = None) -> Response:
    """`call_model` for the ``allm`` fixture, on the test's event loop (asyncio or trio, through anyio).

    A model with an ``acall`` coroutine (``openai:`` with the async client, an ``async def``
    ``py:`` model, recorded replies) is awaited, given up on after ``timeout`` seconds unless it
    keeps its own time (``enforces_timeout``); any other model (``local``, a sync ``py:`` model)
    runs in a worker thread, exactly as `call_model` runs it, so the event loop is never blocked.
    """
    import anyio

    if not callable(getattr(model, "acall", None)) or not getattr(model, "is_async", True):
        return await anyio.to_thread.run_sync(call_model, model, name, messages, params, timeout)
    start = time.perf_counter()
    try:
        if timeout is None or getattr(model, "enforces_timeout", False):
            result = await model.acall(messages, **params)
        else:
            try:
                with anyio.fail_after(timeout):
                    result = await model.acall(messages, **params)
            except TimeoutError:
                raise ModelError(f"{no_answer(f'model {name}', timeout)}; the call was cancelled. Make the model "
                                 "answer in time, or raise --llm-timeout / llm_timeout") from None
    except ReplyError as exc:
        raise ModelError(f"model {name} returned an unusable reply: {exc}") from None
    return as_reply(result, name, time.perf_counter() - start)


def no_answer(model: str, timeout: float) -> str:
    """The start of every "model gave no answer in time" message: the model and the limit."""
    return f"{model} gave no answer within {timeout:g} s (--llm-timeout / llm_timeout)"


T = TypeVar("T")


def run_with_timeout(fn: Callable[[], T], timeout: float | None, thread_name: str) -> T:
    """``fn()`` in a daemon thread; its result or exception, or `TimeoutError` after ``timeout`` seconds
    (None: wait for it).

    A Python thread cannot be killed: on a timeout ``fn`` goes on running, and
    what it returns or raises then is dropped. A daemon thread never keeps the
    interpreter from exiting, so a hung model cannot hang the end of the run.
    The thread runs in a copy of the caller's context (context variables).
    """
    done = threading.Event()
    outcome: list[Any] = []  # [True, result] or [False, exception]

    def work() -> None:
        try:
            outcome.extend((True, fn()))
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller, who re-raises it
            outcome.extend((False, exc))
        finally:
            done.set()

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(work,), name=thread_name, daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"no answer within {timeout:g} s")
    ok, value = outcome
    if ok:
        return value  # type: ignore[no-any-return]
    try:
        raise value
    finally:
        del value  # no reference cycle through the traceback
