"""Model specs (``local``, ``openai:<model>``, ``py:<module>:<callable>``) parsed and checked; provider options."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmmetrics.errors import ConfigError

Messages = Sequence[Mapping[str, str]]
ModelCallable = Callable[..., Any]  # (messages, **params) -> str | Response
JudgeCall = Callable[[list[dict[str, str]], dict[str, Any]], Any]  # a judge model: (messages, params) -> Response

DEFAULT_SPEC = "local"  # the embedded SmolLM2, when no --llm-model / llm_model says otherwise
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
    if "," in spec or any(c.isspace() for c in spec.strip()):
        raise ConfigError(
            f"{spec!r} names several models (or holds a space): a spec names one model. For the model matrix, give "
            "--llm-model once per model (--llm-model local --llm-model openai:gpt-4o-mini), or list them in "
            "llm_models separated by spaces or new lines")
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

def model_name(model: object) -> str:
    """What ``Response.model`` says for a model: its spec, else its name."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, str):
        return spec
    return str(getattr(model, "__name__", type(model).__name__))

