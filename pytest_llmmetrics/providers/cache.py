"""One model object per spec per process: the models the ``llm`` fixture calls, loaded on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.providers.call import call_model
from pytest_llmmetrics.providers.local import LocalModel
from pytest_llmmetrics.providers.openai import OpenAIModel
from pytest_llmmetrics.providers.python import CallableModel, import_callable
from pytest_llmmetrics.providers.spec import KNOWN_SPECS, JudgeCall, ProviderOptions, check_spec
from pytest_llmmetrics.response import Response


class ModelCache:
    """One model object per spec per process, shared by every test that uses it."""

    def __init__(self, rootdir: Path, options: ProviderOptions | None = None) -> None:
        self.rootdir = rootdir
        self.options = options or ProviderOptions()
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()  # judges of samples may ask for a model from several threads

    def get(self, spec: str) -> Any:
        with self._lock:
            model = self._models.get(spec)
            if model is None:
                model = self._models[spec] = self._load(spec)
            return model

    def judge_model(self, spec: str, wrap: Callable[[Any], Any] | None = None) -> tuple[str, JudgeCall, int]:
        """A judge model for ``metrics.judge``: ``(spec, call(messages, params) -> Response, concurrency)``.

        The model is loaded on the first call, not here, so that replayed judgements
        (``wrap``: the test's recorded replies) need no judge model at all.
        """
        model: Any = self.lazy(spec)
        concurrency = model.max_concurrency
        if wrap is not None:
            model = wrap(model)

        def call(messages: list[dict[str, str]], params: dict[str, Any]) -> Response:
            return call_model(model, spec, messages, params, self.options.timeout)

        return spec, call, concurrency

    def lazy(self, spec: str) -> LazyModel:
        """The model of ``spec``, loaded on its first call (a replayed reply needs no model)."""
        kind, _ = check_spec(spec)
        concurrency = self.options.concurrency if kind == "openai" else 1
        return LazyModel(spec, lambda: self.get(spec), concurrency, self.options.timeout)

    def resolve(self, model: Any, where: str = "the llm_model fixture") -> Any:
        """What an ``llm_model`` fixture returned, as a model: a spec string is loaded like ``--llm-model``."""
        if isinstance(model, str):
            try:
                return self.get(model)
            except ConfigError as exc:
                raise ConfigError(f"{where} returned {model!r}: {exc}") from None
        if not callable(model):
            raise ConfigError(
                f"{where} returned {type(model).__name__} ({model!r:.80}); return a model spec such as "
                f"'py:myapp.bot:reply' ({KNOWN_SPECS}) or a callable (messages, **params) -> str | Response"
            )
        return model

    def _load(self, spec: str) -> Any:
        kind, target = check_spec(spec)
        if kind == "local":
            return LocalModel(timeout=self.options.timeout)
        if kind == "openai":
            return OpenAIModel(target, self.options)
        model = CallableModel(import_callable(spec, target, self.rootdir), spec)
        if model.is_async:  # an async model answers several requests at once (allm.sample), bounded
            model.max_concurrency = self.options.concurrency
        return model


class LazyModel:
    """A model loaded on its first call (a replayed reply or judgement never loads it)."""

    enforces_timeout = True  # it calls the model through call_model, with the timeout, itself

    def __init__(self, spec: str, load: Callable[[], Any], max_concurrency: int, timeout: float | None) -> None:
        self.spec = spec
        self.max_concurrency = max_concurrency
        self._load = load
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<model {self.spec} (loaded on first call)>"

    def __call__(self, messages: list[dict[str, str]], **params: Any) -> Any:
        return call_model(self._load(), self.spec, messages, params, self._timeout)
