"""Model specs (``local``, ``openai:<model>``, ``py:<module>:<callable>``) and the models they name.

The ``local`` and ``openai:`` providers live in `local` and `remote`; both are
imported, and load their heavy dependencies, on a test's first call only.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import ConfigError

Messages = Sequence[Mapping[str, str]]
ModelCallable = Callable[..., Any]  # (messages, **params) -> str | Response

KNOWN_SPECS = "local, openai:<model>, py:<module>:<callable>"


@dataclass(frozen=True)
class ProviderOptions:
    """Settings of the providers: ``timeout`` (``--llm-timeout``) for every model, the rest for ``openai:``."""

    base_url: str | None = None
    timeout: float | None = 60.0  # None: no limit
    max_retries: int = 3
    retry_backoff: float = 1.0
    concurrency: int = 8


def check_spec(spec: str) -> tuple[str, str]:
    """Split a spec into ``(kind, target)``; an unknown or malformed spec is a `ConfigError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model spec {spec!r} is empty; use one of: {KNOWN_SPECS}")
    kind, _, target = spec.partition(":")
    if kind == "local" and not target:
        return kind, ""
    if kind == "openai":
        if target.strip():
            return kind, target
        raise ConfigError(f"model spec {spec!r} has no model name: write openai:<model>, e.g. openai:gpt-4o-mini")
    if kind == "py":
        module, _, name = target.partition(":")
        if module and name and all(part.isidentifier() for part in module.split(".") + name.split(".")):
            return kind, target
        raise ConfigError(
            f"model spec {spec!r} is malformed: write py:<module>:<callable>, e.g. py:myapp.bot:reply"
        )
    raise ConfigError(f"unknown model spec {spec!r}; known specs: {KNOWN_SPECS}")


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
        self._signature = _signature(fn)
        self._accepts = _accepted_params(self._signature)
        if self._signature is not None:
            from .settings import LLMSettings

            # What every call sends (a callable may require it), as far as the callable takes it.
            always = LLMSettings().call_params()
            sent = {k: v for k, v in always.items() if self._accepts is None or k in self._accepts}
            try:
                self._signature.bind("messages", **sent)
            except TypeError as exc:
                raise ConfigError(_wrong_signature(spec, fn, str(exc))) from None

    def __call__(self, messages: Messages, **params: Any) -> Any:
        if self._accepts is not None:
            params = {k: v for k, v in params.items() if k in self._accepts}
        try:
            return self.fn(messages, **params)
        except TypeError as exc:
            # Raised by the call itself, not inside fn: fn does not take (messages). Only checked here
            # when its signature could not be read up front (some builtins).
            if self._signature is None and exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                raise ConfigError(_wrong_signature(self.spec, self.fn, str(exc))) from None
            raise

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


def model_name(model: object) -> str:
    """What ``Response.model`` says for a model: its spec, else its name."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, str):
        return spec
    return str(getattr(model, "__name__", type(model).__name__))


def _import_callable(spec: str, target: str, rootdir: Path) -> ModelCallable:
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
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{spec}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


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
            from .local import LocalModel

            return LocalModel(timeout=self.options.timeout)
        if kind == "openai":
            from .remote import OpenAIModel

            return OpenAIModel(target, self.options)
        return CallableModel(_import_callable(spec, target, self.rootdir), spec)
