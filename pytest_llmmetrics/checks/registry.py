"""The registry of named metrics and the `@metric` decorator that adds user checks to it."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from pytest_llmmetrics import metrics, state
from pytest_llmmetrics.checks.check import Check, MeasureResult
from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.tracks import track_problem


class MetricFactory:
    """What ``@metric`` turns a function into: call it to get a `Check`.

    ``factory(*args, min=..., max=..., name=..., **params)`` returns a check that
    measures ``fn(reply, *args, **params)``; ``min``/``max`` override the bounds
    given to the decorator.
    """

    def __init__(
        self,
        fn: Callable[..., MeasureResult],
        *,
        name: str,
        higher_is_better: bool | None,
        min: float | None,
        max: float | None,
        track: str = "",
    ) -> None:
        self.fn = fn
        self.track = track
        self.name = name
        self.higher_is_better = higher_is_better
        self.min = min
        self.max = max
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: Any, min: Any = ..., max: Any = ..., name: str | None = None, **params: Any) -> Check:
        fn = self.fn
        return Check(
            name=name or self.name,
            kind=self.name,
            measure=lambda reply: fn(reply, *args, **params),
            min=self.min if min is ... else min,
            max=self.max if max is ... else max,
            higher_is_better=self.higher_is_better,
            track=self.track,
        )

    def __repr__(self) -> str:
        return f"<metric {self.name!r} from {_origin(self.fn)}>"


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def metric(
    fn: Callable[..., MeasureResult] | None = None,
    *,
    name: str | None = None,
    higher_is_better: bool | None = None,
    min: float | None = None,
    max: float | None = None,
    track: str | None = None,
) -> Any:
    """Turn ``fn(reply, **params) -> number | bool | Measurement`` into a named check.

    Use bare or with arguments::

        @pytest_llmmetrics.metric(min=1)
        def mentions_refund_window(reply, days=30):
            return f"{days} days" in reply.text

        llm_metrics.expect(reply, mentions_refund_window())
        llm_metrics.expect(reply, "mentions_refund_window")   # by name, too

    A metric returning a bool with no bounds must return true to pass; a numeric
    metric with no bounds is recorded only (tracked in the baseline).
    ``higher_is_better`` defaults to what the bounds say (``min``: higher,
    ``max``: lower; a bool: true is better); with no bounds a numeric metric
    has no direction, and the delta report calls a move *changed*. The name (default: the
    function's name) is registered, so it works wherever a built-in does.
    ``track`` is ``utility`` (the default), ``alignment`` or ``operations``.
    """

    __tracebackhide__ = True  # a mistake here is the user's line, not ours

    def decorate(func: Callable[..., MeasureResult]) -> MetricFactory:
        __tracebackhide__ = True
        metric_name = name or func.__name__
        factory = MetricFactory(func, name=metric_name, higher_is_better=higher_is_better, min=min, max=max,
                                track=track or "")
        if track is not None and track_problem(track):
            raise ConfigError(f"@metric {_origin(func)}: track {track_problem(track)}")
        Check(name=metric_name, measure=lambda reply: 0.0, min=min, max=max)  # validates the bounds now
        if metric_name in metrics.__all__:
            raise ConfigError(
                f"@metric {_origin(func)}: the name {metric_name!r} is a built-in metric; "
                "choose another name with @metric(name=...)"
            )
        previous = state.DECORATED.get(metric_name)
        if previous is not None and _origin(previous.fn) != _origin(func):
            raise ConfigError(
                f"@metric: the name {metric_name!r} is defined twice, by {_origin(previous.fn)} "
                f"and {_origin(func)}; metric names must be unique, pass @metric(name=...)"
            )
        state.DECORATED[metric_name] = factory
        return factory

    if fn is not None:
        return decorate(fn)
    return decorate


CheckFactory = Callable[..., Check]


class MetricRegistry:
    """Named metrics: built-ins, ``@metric`` functions and those plugins register.

    Plugins add theirs in the ``pytest_llmmetrics_register_metrics`` hook.
    """

    def __init__(self) -> None:
        self._factories: dict[str, CheckFactory] = {}
        self._origins: dict[str, str] = {}

    def add(self, name: str, factory: CheckFactory, *, origin: str = "") -> None:
        """Register ``factory(**kwargs) -> Check`` under ``name``."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"metric name {name!r} must be a Python identifier (letters, digits, _)")
        if not callable(factory):
            raise ConfigError(f"metric {name!r}: {factory!r} is not callable; register a function returning a Check")
        origin = origin or _origin(factory)
        if name in self._factories and self._origins[name] != origin:
            raise ConfigError(
                f"metric {name!r} is registered twice, by {self._origins[name]} and {origin}; "
                "metric names must be unique"
            )
        self._factories[name] = factory
        self._origins[name] = origin

    def get(self, name: str) -> CheckFactory:
        """The factory for ``name``; an unknown name is a `ConfigError` listing the known ones."""
        factory = self._factories.get(name) or state.DECORATED.get(name)
        if factory is not None:
            return factory
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown metric {name!r}.{hint} Known metrics: {', '.join(known)}. "
            "Define your own with @pytest_llmmetrics.metric, or install the plugin that provides it."
        )

    def check(self, metric: str, /, *args: Any, **kwargs: Any) -> Check:
        """Build the named check: ``registry.check("word_count", max=50)`` (``name=`` renames it)."""
        factory = self.get(metric)
        signature = _signature(factory)
        rename = None
        if "name" in kwargs and (signature is None or "name" not in signature.parameters):
            rename = kwargs.pop("name")  # a built-in takes no name=: the check is renamed once built
            if rename is not None and (not isinstance(rename, str) or not rename.strip()):
                raise ConfigError(f"metric {metric!r}: name={rename!r} must be a non-empty string")
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise ConfigError(f"metric {metric!r}: {exc}; it takes {metric}{signature}") from None
        result = factory(*args, **kwargs)
        if not isinstance(result, Check):
            raise ConfigError(f"metric {metric!r} did not build a Check (got {type(result).__name__})")
        return result if rename is None else result.named(rename)

    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(state.DECORATED))

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in state.DECORATED

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _signature(factory: CheckFactory) -> inspect.Signature | None:
    """What ``factory`` takes; for ``@metric`` functions, the function's own arguments after the reply,
    and ``min``, ``max`` and ``name``. None where a callable does not say (the call then tells)."""
    try:
        if not isinstance(factory, MetricFactory):
            return inspect.signature(factory)
        params = list(inspect.signature(factory.fn).parameters.values())[1:]  # after the reply
    except (TypeError, ValueError):
        return None
    P = inspect.Parameter
    taken = {p.name for p in params}
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD, P.VAR_POSITIONAL)]
    keyword = [p for p in params if p.kind is P.KEYWORD_ONLY]
    keyword += [P(n, P.KEYWORD_ONLY, default=None) for n in ("min", "max", "name") if n not in taken]
    return inspect.Signature(positional + keyword + [p for p in params if p.kind is P.VAR_KEYWORD])


def builtin_registry() -> MetricRegistry:
    """A registry holding the built-in checks of `pytest_llmmetrics.metrics`."""
    registry = MetricRegistry()
    for name in metrics.__all__:
        if name in metrics.NOT_CHECKS:
            continue
        registry.add(name, getattr(metrics, name), origin="pytest_llmmetrics.metrics")
    return registry
