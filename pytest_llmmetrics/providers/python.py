"""The ``py:<module>:<callable>`` provider: any Python callable as the model under test."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.markers import LLMSettings
from pytest_llmmetrics.providers.call import run_with_timeout
from pytest_llmmetrics.providers.spec import Messages, ModelCallable


class CallableModel:
    """A Python callable ``(messages, **params) -> str | Response`` used as the model.

    Parameters the callable does not accept (it has no ``**params``) are not
    passed, so ``def reply(messages): ...`` works too.
    """

    def __init__(self, fn: ModelCallable, spec: str) -> None:
        if not callable(fn):
            raise ConfigError(f"{spec}: {fn!r} is not callable; point the spec at a function or callable object")
        self.fn = fn
        self.spec = spec
        self.max_concurrency = 1  # llm_concurrency for an async model (set by the model cache)
        self._signature = _signature(fn)
        self._accepts = _accepted_params(self._signature)
        if self._signature is not None:
            # What every call sends (a callable may require it), as far as the callable takes it.
            always = LLMSettings().call_params()
            sent = {k: v for k, v in always.items() if self._accepts is None or k in self._accepts}
            try:
                self._signature.bind("messages", **sent)
            except TypeError as exc:
                raise ConfigError(_wrong_signature(spec, fn, str(exc))) from None

    @property
    def is_async(self) -> bool:
        """An ``async def`` model: awaited under ``allm``, run to completion under ``llm``."""
        fn = self.fn
        call = type(fn).__call__ if not inspect.isfunction(fn) and not inspect.ismethod(fn) else None
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._accepts is not None:
            return {k: v for k, v in params.items() if k in self._accepts}
        return params

    def __call__(self, messages: Messages, **params: Any) -> Any:
        try:
            result = self.fn(messages, **self._params(params))
        except TypeError as exc:
            # Raised by the call itself, not inside fn: fn does not take (messages). Only checked here
            # when its signature could not be read up front (some builtins).
            if self._signature is None and exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                raise ConfigError(_wrong_signature(self.spec, self.fn, str(exc))) from None
            raise
        if inspect.isawaitable(result):  # an async model called by the sync llm fixture: run it to the end
            return run_to_completion(result)
        return result

    async def acall(self, messages: Messages, **params: Any) -> Any:
        """The model under ``allm``: an ``async def`` one is awaited on the test's event loop."""
        result = self.fn(messages, **self._params(params))
        if inspect.isawaitable(result):
            return await result
        return result

    def __repr__(self) -> str:
        return f"<model {self.spec}>"


def _signature(fn: ModelCallable) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins do not say
        return None


def _wrong_signature(spec: str, fn: ModelCallable, problem: str) -> str:
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return (
        f"{spec}: {name} cannot be called as a model ({problem}). A model is called as fn(messages, **params) "
        "and returns a str or a pytest_llmmetrics.Response: write e.g. def reply(messages, **params): ..."
    )


def _accepted_params(sig: inspect.Signature | None) -> frozenset[str] | None:
    """Keyword names a callable takes besides messages, or None when it takes ``**kwargs`` (or does not say)."""
    if sig is None:
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    names = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return frozenset(names[1:])



def run_to_completion(awaitable: Awaitable[Any]) -> Any:
    """An awaitable's result, from sync code: on a fresh event loop, in a thread of its own if this one has a loop."""

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    return run_with_timeout(lambda: asyncio.run(wait()), None, "llm-async-model")


def _import_error(exc: BaseException) -> str:
    """An error raised while importing a ``py:`` module, in a line: a syntax error names its file and line."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}, line {exc.lineno}); fix the module"
    return f"{type(exc).__name__}: {exc}; fix the module, or what it imports"


def import_callable(spec: str, target: str, rootdir: Path) -> ModelCallable:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] or str(rootdir) in sys.path:
            raise ConfigError(f"{spec}: cannot import {module_name!r}: {exc}") from None
        # Like pytest's own rootdir-relative imports: try the rootdir once.
        sys.path.insert(0, str(rootdir))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc2:
            raise ConfigError(
                f"{spec}: cannot import {module_name!r} ({exc2}); make it importable "
                f"(install it, or put it under the rootdir {rootdir})"
            ) from None
        except Exception as exc2:  # noqa: BLE001 - the module's own error, said in a line
            raise ConfigError(f"{spec}: importing {module_name!r} failed: {_import_error(exc2)}") from None
    except Exception as exc:  # noqa: BLE001 - a syntax error, or the module raised while it was imported
        raise ConfigError(f"{spec}: importing {module_name!r} failed: {_import_error(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{spec}: module {module_name!r} has no attribute {attr!r}") from None
    found: ModelCallable = obj  # checked to be callable by CallableModel
    return found
