"""One model object per spec per process: the models the ``llm`` fixture calls, loaded on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.providers.local import LocalModel
from pytest_llmmetrics.providers.openai import OpenAIModel
from pytest_llmmetrics.providers.python import CallableModel, import_callable
from pytest_llmmetrics.providers.spec import KNOWN_SPECS, ProviderOptions, check_spec


class ModelCache:
    """One model object per spec per process, shared by every test that uses it."""

    def __init__(self, rootdir: Path, options: ProviderOptions | None = None) -> None:
        self.rootdir = rootdir
        self.options = options or ProviderOptions()
        self._models: dict[str, Any] = {}

    def get(self, spec: str) -> Any:
        model = self._models.get(spec)
        if model is None:
            model = self._models[spec] = self._load(spec)
        return model

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
        return CallableModel(import_callable(spec, target, self.rootdir), spec)
