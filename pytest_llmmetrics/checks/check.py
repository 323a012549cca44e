"""What a check is: a metric name, a function of the reply, bounds with a direction, and its outcome."""

from __future__ import annotations

import decimal
import math
import numbers
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pytest_llmmetrics.errors import ConfigError, MetricError
from pytest_llmmetrics.response import Response, as_response
from pytest_llmmetrics.tracks import default_track, track_problem
from pytest_llmmetrics.values import LIMIT, is_number


@dataclass(frozen=True)
class Measurement:
    """A metric value with a human-readable explanation, shown when the check misses."""

    value: float
    detail: str = ""


MeasureResult = float | int | bool | Measurement
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
    ``contains[Paris]``), used for per-metric tolerances. ``track`` is
    ``utility``, ``alignment`` or ``operations`` (default: by kind, see
    `pytest_llmmetrics.tracks`); ``check.in_track("alignment")`` sets it.
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
    track: str = ""

    def __post_init__(self) -> None:
        __tracebackhide__ = True  # a bad bound is the caller's line, not ours
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a metric name must be a non-empty string, got {self.name!r}")
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is None:
                continue
            if not is_number(value):
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
        if not self.track:
            object.__setattr__(self, "track", default_track(self.kind))
        elif track_problem(self.track):
            raise ConfigError(f"metric {self.name!r}: track {track_problem(self.track)}")
        if self.higher_is_better is None and (self.min is None) != (self.max is None):
            object.__setattr__(self, "higher_is_better", self.min is not None)

    def named(self, name: str) -> Check:
        """The same check recorded under another metric name."""
        return replace(self, name=name, kind=self.kind)

    def in_track(self, track: str) -> Check:
        """A copy of the check on another track: ``metrics.word_count(max=80).in_track("alignment")``."""
        __tracebackhide__ = True
        problem = track_problem(track)
        if problem:
            raise ConfigError(f"metric {self.name!r}: in_track(): the track {problem}")
        return replace(self, track=track)

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
    """A metric value as a float within ±`values.LIMIT`; bools count as 1.0/0.0.

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
    numpy = sys.modules.get("numpy")
    return (numpy.bool_,) if numpy is not None else ()
