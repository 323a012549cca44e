"""What a check is, the `@metric` decorator for user checks, and the registry of named metrics."""

from __future__ import annotations

import decimal
import difflib
import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Union

from .errors import ConfigError, MetricError
from .stats import LIMIT
from .response import Response, as_response


@dataclass(frozen=True)
class Measurement:
    """A metric value with a human-readable explanation, shown when the check misses."""

    value: float
    detail: str = ""


MeasureResult = Union[float, int, bool, Measurement]
MeasureFn = Callable[[Response], MeasureResult]


@dataclass(frozen=True)
class Outcome:
    """One check measured on one reply."""

    value: float
    passed: bool
    threshold: str
    detail: str = ""
    boolean: bool = False

    def format_value(self) -> str:
        if self.boolean:
            return "true" if self.value else "false"
        return _number(self.value)


def _number(value: float) -> str:
    return f"{value:.6g}"


@dataclass(frozen=True)
class Check:
    """A metric name, a function of the reply, and a threshold with a direction.

    ``min``/``max`` are inclusive bounds on the value; with neither the value is
    only recorded (tracked in the baseline, never failing). ``higher_is_better``
    is the metric's good direction for the delta report; left ``None`` it
    follows the bounds (only ``min``: higher is better; only ``max``: lower is
    better) and is otherwise none: a move is reported as *changed*, never as a
    regression. ``boolean`` checks
    have the value 1.0 for true and 0.0 for false and read as such in messages.
    ``kind`` is the family a check belongs to (``contains`` for
    ``contains[Paris]``), used for per-metric tolerances.
    """

    name: str
    measure: MeasureFn = field(compare=False, repr=False)
    min: float | None = None
    max: float | None = None
    higher_is_better: bool | None = None
    kind: str = ""
    boolean: bool = False
    # Called with all replies before they are measured one by one, so that a
    # check can batch work (similarity encodes every sample in one batch).
    prepare: Callable[[list[Response]], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a metric name must be a non-empty string, got {self.name!r}")
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(
                    f"metric {self.name!r}: {bound}={value!r} is not a finite number; "
                    f"give {bound} as an int or float"
                )
            object.__setattr__(self, bound, float(value))
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(
                f"metric {self.name!r}: min={_number(self.min)} is greater than "
                f"max={_number(self.max)}, so no value could pass; swap or fix the bounds"
            )
        if not self.kind:
            object.__setattr__(self, "kind", self.name.split("[", 1)[0])
        if self.higher_is_better is None and (self.min is None) != (self.max is None):
            object.__setattr__(self, "higher_is_better", self.min is not None)

    def named(self, name: str) -> Check:
        """The same check recorded under another metric name."""
        return replace(self, name=name, kind=self.kind)

    @property
    def threshold(self) -> str:
        """The pass condition in words, e.g. ``<= 50`` or ``must be true``."""
        if self.boolean:
            if self.min is not None and self.min > 0:
                return "must be true"
            if self.max is not None and self.max < 1:
                return "must be false"
        if self.min is not None and self.max is not None:
            return f"between {_number(self.min)} and {_number(self.max)}"
        if self.min is not None:
            return f">= {_number(self.min)}"
        if self.max is not None:
            return f"<= {_number(self.max)}"
        return "recorded only"

    def passes(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        return True

    def evaluate(self, reply: Response | str) -> Outcome:
        """Measure this check on one reply."""
        result = self.measure(as_response(reply, f"check {self.name!r}: the reply"))
        detail = ""
        if isinstance(result, Measurement):
            detail = result.detail
            result = result.value
        value = to_value(result, f"metric {self.name!r}")
        if isinstance(result, bool) and self.min is None and self.max is None:
            # A yes/no metric with no bounds means "must be true".
            return Outcome(value, passed=result, threshold="must be true", detail=detail, boolean=True)
        boolean = self.boolean or isinstance(result, bool)
        return Outcome(value, passed=self.passes(value), threshold=self.threshold, detail=detail, boolean=boolean)


def to_value(result: object, what: str) -> float:
    """A metric value as a float within ±`stats.LIMIT`; bools count as 1.0/0.0.

    Any real number is taken (int, float, NumPy scalars, ``Decimal``,
    ``Fraction``); NaN, infinities and values so large that a mean or a
    standard deviation of them would overflow are refused.
    """
    if isinstance(result, (bool, numpy_bool_types())):
        return 1.0 if result else 0.0
    if isinstance(result, (numbers.Real, decimal.Decimal)):
        try:
            value = float(result)
        except (OverflowError, ValueError):
            value = math.nan
        if math.isfinite(value) and abs(value) <= LIMIT:
            return value
        raise MetricError(f"{what} gave {result!r}; a metric value must be a finite number between "
                          f"-{LIMIT:g} and {LIMIT:g}")
    raise MetricError(
        f"{what} gave {result!r} ({type(result).__name__}); a metric must be a number, "
        "a bool or a pytest_llmmetrics.Measurement"
    )


def numpy_bool_types() -> tuple[type, ...]:
    """NumPy's bool type when NumPy is already imported (never imported here for it)."""
    import sys

    numpy = sys.modules.get("numpy")
    return (numpy.bool_,) if numpy is not None else ()


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
    ) -> None:
        self.fn = fn
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
        )

    def __repr__(self) -> str:
        return f"<metric {self.name!r} from {_origin(self.fn)}>"


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


# Metrics made with @metric, by name. Module-level on purpose: test modules and
# conftests define them at import, before any config exists to hold them.
_DECORATED: dict[str, MetricFactory] = {}


def metric(
    fn: Callable[..., MeasureResult] | None = None,
    *,
    name: str | None = None,
    higher_is_better: bool | None = None,
    min: float | None = None,
    max: float | None = None,
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
    """

    def decorate(func: Callable[..., MeasureResult]) -> MetricFactory:
        metric_name = name or func.__name__
        factory = MetricFactory(func, name=metric_name, higher_is_better=higher_is_better, min=min, max=max)
        Check(name=metric_name, measure=lambda reply: 0.0, min=min, max=max)  # validates the bounds now
        from . import metrics

        if metric_name in metrics.__all__:
            raise ConfigError(
                f"@metric {_origin(func)}: the name {metric_name!r} is a built-in metric; "
                "choose another name with @metric(name=...)"
            )
        previous = _DECORATED.get(metric_name)
        if previous is not None and _origin(previous.fn) != _origin(func):
            raise ConfigError(
                f"@metric: the name {metric_name!r} is defined twice, by {_origin(previous.fn)} "
                f"and {_origin(func)}; metric names must be unique, pass @metric(name=...)"
            )
        _DECORATED[metric_name] = factory
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
        factory = self._factories.get(name) or _DECORATED.get(name)
        if factory is not None:
            return factory
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown metric {name!r}.{hint} Known metrics: {', '.join(known)}. "
            "Define your own with @pytest_llmmetrics.metric, or install the plugin that provides it."
        )

    def check(self, name: str, *args: Any, **kwargs: Any) -> Check:
        """Build the named check: ``registry.check("word_count", max=50)``."""
        result = self.get(name)(*args, **kwargs)
        if not isinstance(result, Check):
            raise ConfigError(f"metric {name!r} did not build a Check (got {type(result).__name__})")
        return result

    def names(self) -> list[str]:
        return sorted(set(self._factories) | set(_DECORATED))

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in _DECORATED

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def builtin_registry() -> MetricRegistry:
    """A registry holding the built-in checks of `pytest_llmmetrics.metrics`."""
    from . import metrics

    registry = MetricRegistry()
    for name in metrics.__all__:
        if name in metrics.NOT_CHECKS:
            continue
        registry.add(name, getattr(metrics, name), origin="pytest_llmmetrics.metrics")
    return registry
