"""Statistics for verdicts on sampled metrics: intervals, exact-size calibration, the regression rule, FDR control."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import add as _add
from operator import mul as _mul
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statistics import NormalDist

ONE_SIDED_ALPHA = 0.05
POWER = 0.8


@functools.cache
def _normal() -> NormalDist:
    """The standard normal, made on first use: ``statistics`` costs start-up time and only the report needs it."""
    from statistics import NormalDist

    return NormalDist()


# Exact calibration enumerates every (k0, k1) pair: cheap up to ~200 samples a side.
_CALIBRATE_MAX_CELLS = 201 * 201
_NUISANCE_GRID = tuple(i / 200 for i in range(1, 200))


def z_value(one_sided_alpha: float = ONE_SIDED_ALPHA) -> float:
    return _normal().inv_cdf(1.0 - one_sided_alpha)


def _ac_parts(k0: int, n0: int, k1: int, n1: int) -> tuple[float, float]:
    """Agresti-Caffo: the difference p1 - p0 and its standard error, after adding a success and a failure per side."""
    q0, q1 = (k0 + 1) / (n0 + 2), (k1 + 1) / (n1 + 2)
    return q1 - q0, math.sqrt(q0 * (1 - q0) / (n0 + 2) + q1 * (1 - q1) / (n1 + 2))


def agresti_caffo(k0: int, n0: int, k1: int, n1: int, z: float) -> tuple[float, float]:
    """Agresti-Caffo interval for p1 - p0 with critical value ``z``."""
    d, se = _ac_parts(k0, n0, k1, n1)
    return d - z * se, d + z * se


def _binomial(n: int, p: float) -> list[float]:
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


@functools.lru_cache(maxsize=256)
def rate_critical_value(n0: int, n1: int, one_sided_alpha: float = ONE_SIDED_ALPHA) -> float:
    """The Agresti-Caffo critical value for n0 and n1 samples that holds the false-alarm rate at ``one_sided_alpha``.

    The nominal normal quantile (1.645) lets through up to 5.8 % false
    regressions at some pass rates and sample sizes (5.5 % at n = 5, 5.8 % at
    n = 10, 5.2 % at n = 75, all at p near 0.5), because counts are discrete.
    Here the rejection region ``{statistic < -c}`` is grown cell by cell, most
    extreme first, while its probability under "no change" stays within alpha
    at every true pass rate on a fine grid: an exact unconditional test
    (Suissa-Shuster) ordered by the Agresti-Caffo statistic. Never below the
    nominal quantile; past ~200 samples a side (where enumeration gets slow
    and the excess is tiny) the nominal quantile plus 1 %.
    """
    nominal = z_value(one_sided_alpha)
    if (n0 + 1) * (n1 + 1) > _CALIBRATE_MAX_CELLS:
        return nominal * 1.01
    swapped = _calibrated(n1, n0, one_sided_alpha) if n1 != n0 else nominal  # "improved" is the mirror image
    return max(nominal, _calibrated(n0, n1, one_sided_alpha), swapped)


def _calibrated(n0: int, n1: int, alpha: float) -> float:
    cells = sorted((d / se, k0, k1) for k0 in range(n0 + 1) for k1 in range(n1 + 1)
                   for d, se in [_ac_parts(k0, n0, k1, n1)])
    # P(k0) and P(k1) at every grid point, one list per count: a cell's probabilities are their product.
    by_k0 = list(zip(*(_binomial(n0, p) for p in _NUISANCE_GRID)))
    by_k1 = list(zip(*(_binomial(n1, p) for p in _NUISANCE_GRID)))
    size: list[float] = [0.0] * len(_NUISANCE_GRID)
    i = 0
    while i < len(cells):
        statistic = cells[i][0]
        grown = size
        while i < len(cells) and cells[i][0] == statistic:  # cells with equal statistics go in together
            _, k0, k1 = cells[i]
            grown = list(map(_add, grown, map(_mul, by_k0[k0], by_k1[k1])))
            i += 1
        if max(grown) > alpha:
            return -statistic
        size = grown
    return math.inf  # pragma: no cover - the whole table never fits under alpha


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        even = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function, any df > 0 (df = inf is the normal)."""
    if math.isinf(df):
        return _normal().cdf(t)
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """Student's t quantile, by bisection on `t_cdf` (exact to 1e-9 for any df > 0)."""
    if math.isinf(df):
        return _normal().inv_cdf(p)
    lo, hi = -1e4, 1e4
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2


def _welch_parts(base: Side, current: Side) -> tuple[float, float, float]:
    """``(d, se, df)`` of Welch's comparison of current - base."""
    v0 = base.std * base.std / base.n if base.n > 1 else 0.0
    v1 = current.std * current.std / current.n if current.n > 1 else 0.0
    se = math.sqrt(v0 + v1)
    terms = (v0 * v0 / (base.n - 1) if base.n > 1 else 0.0) + (v1 * v1 / (current.n - 1) if current.n > 1 else 0.0)
    df = (v0 + v1) ** 2 / terms if terms > 0 else math.inf
    return current.mean - base.mean, se, df


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a metric's summary in the baseline or in this run.

    ``binary``: the values are yes/no (1/0) and ``mean`` is the share of yes;
    compared as a pass rate. Otherwise compared by the mean of the values.
    """

    mean: float
    n: int = 1
    std: float = 0.0
    binary: bool = False

    @property
    def successes(self) -> int:
        return round(self.mean * self.n)


@dataclass(frozen=True)
class Change:
    """How a metric moved, measured in its good direction (``higher_is_better=None``: current - baseline).

    ``lo``/``hi`` are one-sided ``1 - alpha`` bounds of ``d``; ``p_worse`` and
    ``p_better`` are one-sided p-values of "worse (better) than the tolerance".
    """

    d: float
    lo: float
    hi: float
    p_worse: float
    p_better: float


def change(base: Side, current: Side, higher_is_better: bool | None, tolerance: float = 0.0,
           one_sided_alpha: float = ONE_SIDED_ALPHA) -> Change:
    """Compare two sides: pass rates when both are binary samples, means otherwise."""
    sign = -1.0 if higher_is_better is False else 1.0
    sampled = base.n > 1 or current.n > 1
    if not sampled:
        d = sign * (current.mean - base.mean)
        return Change(d, d, d, 0.0 if d < -tolerance else 1.0, 0.0 if d > tolerance else 1.0)
    if base.binary and current.binary:
        d, se = _ac_parts(base.successes, base.n, current.successes, current.n)
        crit = rate_critical_value(base.n, current.n, one_sided_alpha)
        scale = z_value(one_sided_alpha) / crit  # p = alpha exactly where the calibrated bound meets the tolerance

        def p_below(x: float) -> float:
            return _normal().cdf(x / se * scale)
    else:
        d, se, df = _welch_parts(base, current)
        crit = t_quantile(1 - one_sided_alpha, df) if se > 0 else 0.0

        def p_below(x: float) -> float:
            return t_cdf(x / se, df)
    d *= sign
    if se == 0:  # no spread on either side: the difference is exact
        return Change(d, d, d, 0.0 if d < -tolerance else 1.0, 0.0 if d > tolerance else 1.0)
    return Change(d, d - crit * se, d + crit * se, p_below(d + tolerance), p_below(-(d - tolerance)))


# Pooled comparisons rest on the t approximation for a mean of per-test differences, which is optimistic for few
# tests with discrete pass rates: at a nominal 5 % it gave up to 6.3 % false regressions on a grid of 150 settings
# (3-100 tests, 1-30 samples, pass rates 0.5-0.99, 20,000 runs each). At 3.5 % the worst case there is 3.9 %.
POOLED_ALPHA = 0.035


def paired(deltas: Sequence[float], higher_is_better: bool | None, tolerance: float = 0.0,
           one_sided_alpha: float = POOLED_ALPHA) -> Change:
    """The mean of per-test differences (current - baseline), tests as clusters.

    Each test contributes one difference, the change of its own mean, so the
    samples within a test are never counted as independent: the standard error
    is the cluster-robust one for equal cluster weights, ``sd(d) / sqrt(T)``,
    with Student's t on ``T - 1`` degrees of freedom. Needs at least two tests.
    """
    count = len(deltas)
    if count < 2:
        raise ValueError("a pooled comparison needs at least two tests")
    sign = -1.0 if higher_is_better is False else 1.0
    mean = math.fsum(deltas) / count
    se = math.sqrt(math.fsum((x - mean) ** 2 for x in deltas) / (count - 1) / count)
    d = sign * mean
    if se <= 1e-12 * max(1.0, abs(mean)):  # every test moved by the same amount: the change is exact
        return Change(d, d, d, 0.0 if d < -tolerance else 1.0, 0.0 if d > tolerance else 1.0)
    df = count - 1
    crit = t_quantile(1 - one_sided_alpha, df)
    return Change(d, d - crit * se, d + crit * se, t_cdf((d + tolerance) / se, df), t_cdf((tolerance - d) / se, df))


def verdict(c: Change, tolerance: float = 0.0, directed: bool = True) -> str:
    """The rule in this module's docstring; a metric with no direction is only ever *changed*.

    The rule (used by the delta report): let ``d`` be the change of a metric in
    its good direction (current - baseline, negated when lower is better), and
    ``[lo, hi]`` an interval for ``d`` whose ends are one-sided 95 % bounds:

    - *regressed*: ``hi < -tolerance`` (worse than the tolerance, beyond noise);
    - *improved*: ``lo > tolerance``;
    - *unstable*: worse with 95 % confidence (``hi < 0``) and the interval
      reaches past the tolerance (``lo < -tolerance <= hi``): the samples cannot
      rule out a worsening that matters, nor confirm one; the delta report also
      calls a regression *unstable* when it does not survive false-discovery
      control;
    - *unchanged* otherwise.

    Pass rates (k of n) use the Agresti-Caffo interval for a difference of two
    proportions, with its critical value calibrated per pair of sample sizes so
    that the chance of a false *regressed* is at most 5 % at every true pass rate
    (an exact unconditional test); means of samples use Welch's t interval.
    Deterministic single values (n = 1 on both sides) have no noise: the interval
    is the point.
    """
    if not directed:
        return "changed" if c.hi < -tolerance or c.lo > tolerance else "unchanged"
    if c.hi < -tolerance:
        return "regressed"
    if c.lo > tolerance:
        return "improved"
    if c.lo < -tolerance <= c.hi < 0:  # worse for sure; whether by more than the tolerance, the samples cannot tell
        return "unstable"
    return "unchanged"


def min_detectable_effect(base: Side, current: Side, one_sided_alpha: float = ONE_SIDED_ALPHA,
                          power: float = POWER) -> float | None:
    """The smallest worsening this comparison would call *regressed* with the given power.

    None for unsampled metrics (there, any change beyond the tolerance counts).
    """
    if base.n <= 1 and current.n <= 1:
        return None
    beta = _normal().inv_cdf(power)
    if base.binary and current.binary:
        z = rate_critical_value(base.n, current.n, one_sided_alpha) + beta
        return z * math.sqrt(_pooled_variance(base, current) * (1 / base.n + 1 / current.n))
    d, se, df = _welch_parts(base, current)
    return (t_quantile(1 - one_sided_alpha, df) + beta) * se


def _pooled_variance(base: Side, current: Side) -> float:
    total = base.n + current.n
    p = (base.successes + current.successes) / total
    p = min(max(p, 0.5 / total), 1 - 0.5 / total)
    return p * (1 - p)


def samples_to_detect(base: Side, current: Side, effect: float, one_sided_alpha: float = ONE_SIDED_ALPHA,
                      power: float = POWER) -> int | None:
    """About how many samples a side would detect a worsening of ``effect`` with the given power."""
    if effect <= 0:
        return None
    z = z_value(one_sided_alpha) + _normal().inv_cdf(power)
    if base.binary and current.binary:
        variance = 2 * _pooled_variance(base, current)
    else:
        variance = base.std**2 + current.std**2
    if variance <= 0:
        return None
    return max(2, math.ceil(z * z * variance / (effect * effect)))


def benjamini_hochberg(p_values: Sequence[float], q: float = ONE_SIDED_ALPHA) -> list[bool]:
    """Which hypotheses to reject with the false discovery rate held at ``q``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    cutoff = -1
    for rank, i in enumerate(order, start=1):
        if p_values[i] <= q * rank / m:
            cutoff = rank
    rejected = [False] * m
    for rank, i in enumerate(order, start=1):
        if rank <= cutoff:
            rejected[i] = True
    return rejected
