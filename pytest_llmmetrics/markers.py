"""``@pytest.mark.llm``: its arguments checked, and the model settings a test's markers add up to."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.providers.spec import DEFAULT_SPEC, check_spec
from pytest_llmmetrics.tracks import group_problem, module_of
from pytest_llmmetrics.values import number_problem

MARKER_HELP = (
    "llm(model=None, system=None, temperature=0.0, max_tokens=256, seed=None, top_p=None, stop=None, "
    "presence_penalty=None, frequency_penalty=None, params=None, group=None): settings of the llm fixture for "
    "this test, class or module; closer markers win. params={...} passes provider-specific parameters; "
    "group='billing' names the group the test's metrics are pooled in (default: its module)."
)


@dataclass(frozen=True)
class LLMSettings:
    """What the ``llm`` fixture sends with every call of one test."""

    model: str = DEFAULT_SPEC
    system: str | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def call_params(self) -> dict[str, Any]:
        """The keyword arguments a model callable receives."""
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.seed is not None:
            params["seed"] = self.seed
        params.update(self.params)
        return params


def _number(lo: float, hi: float, *, lo_open: bool = False) -> Any:
    return lambda value: number_problem(value, lo, hi, lo_open=lo_open)


def _integer(lo: int | None) -> Any:
    return lambda value: None if value is None and lo is None else number_problem(value, lo, integer=True)


def _string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    return f"must be a string, got {value!r} ({type(value).__name__})"


def _model(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be a model spec string, got {value!r} ({type(value).__name__})"
    try:
        check_spec(value)
    except ConfigError as exc:
        return str(exc)
    return None


def _stop(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return None
    return f"must be a string or a list of strings, got {value!r}"


def _params(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        return f"must be a dict with string keys, got {value!r}"
    return None


# Argument name -> validator returning an error text or None.
VALIDATORS: dict[str, Any] = {
    "model": _model,
    "system": _string,
    "temperature": _number(0.0, 2.0),
    "max_tokens": _integer(1),
    "seed": _integer(None),
    "top_p": _number(0.0, 1.0, lo_open=True),
    "stop": _stop,
    "presence_penalty": _number(-2.0, 2.0),
    "frequency_penalty": _number(-2.0, 2.0),
    "params": _params,
}
# The marker also takes what is not a model setting.
MARK_VALIDATORS: dict[str, Any] = {**VALIDATORS, "group": lambda v: None if v is None else group_problem(v)}
# Optional sampling parameters that are passed through only when given.
_PASS_THROUGH = ("top_p", "stop", "presence_penalty", "frequency_penalty")


def validate_kwargs(kwargs: Mapping[str, Any], where: str, validators: Mapping[str, Any] = VALIDATORS) -> None:
    """Raise `ConfigError` naming ``where``, the argument and the bad value."""
    for name, value in kwargs.items():
        validator = validators.get(name)
        if validator is None:
            close = difflib.get_close_matches(name, list(validators), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown argument {name!r}{hint}. Known: {', '.join(validators)}; "
                "pass provider-specific parameters as params={...}"
            )
        problem = validator(value)
        if problem:
            # "temperature must be ..." reads on; a model spec's own message stands after a colon.
            raise ConfigError(f"{where}: {name} {problem}" if problem.startswith("must") else
                              f"{where}: {name}: {problem}")


def validate_marks(marks: Iterable[pytest.Mark], where: str) -> None:
    for mark in marks:
        if mark.args:
            raise ConfigError(
                f"{where}: @pytest.mark.llm takes keyword arguments only, got positional {mark.args!r}; "
                "write e.g. @pytest.mark.llm(model='py:mymodule:reply')"
            )
        validate_kwargs(mark.kwargs, f"{where}: @pytest.mark.llm", MARK_VALIDATORS)


def group_of(nodeid: str, marks: Iterable[pytest.Mark]) -> str:
    """The test's group: the closest ``llm`` marker that names one, else the test's module."""
    for mark in marks:
        group = mark.kwargs.get("group")
        if group is not None:
            return str(group).strip()
    return module_of(nodeid)


def settings_from_marks(marks: Iterable[pytest.Mark], default_model: str) -> LLMSettings:
    """Settings from the ``llm`` markers, closest first (closest wins per argument)."""
    merged: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for mark in marks:
        for key, value in mark.kwargs.items():
            if key == "group":
                continue
            if key == "params":
                for pk, pv in (value or {}).items():
                    params.setdefault(pk, pv)
            else:
                merged.setdefault(key, value)
    return apply(LLMSettings(model=default_model), merged, params)


def apply(base: LLMSettings, kwargs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> LLMSettings:
    """``base`` with ``kwargs`` (validated marker-style arguments) applied."""
    extra = dict(base.params)
    for name in _PASS_THROUGH:
        if kwargs.get(name) is not None:
            extra[name] = kwargs[name]
    extra.update(kwargs.get("params") or {})
    extra.update(params or {})
    return LLMSettings(
        model=kwargs.get("model") or base.model,
        system=kwargs.get("system", base.system),
        temperature=float(kwargs.get("temperature", base.temperature)),
        max_tokens=int(kwargs.get("max_tokens", base.max_tokens)),
        seed=kwargs.get("seed", base.seed),
        params=extra,
    )
