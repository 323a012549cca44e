"""Statistics for verdicts on sampled metrics: intervals, the regression rule, FDR control.

The rule (used by the delta report): let ``d`` be the change of a metric in
its good direction (current - baseline, negated when lower is better), and
``[lo, hi]`` a confidence interval for ``d`` whose upper end is a one-sided
95 % bound (a two-sided 90 % interval):

- *regressed*: ``hi < -tolerance`` (worse than the tolerance, beyond noise);
- *improved*: ``lo > tolerance``;
- *unstable*: the estimate is worse than the tolerance but the interval
  reaches past it (``d < -tolerance <= hi``): it may be a regression, the
  samples cannot tell;
- *unchanged* otherwise.

Pass rates (k of n) use the Agresti-Caffo interval for a difference of two
proportions; means of samples use Welch's t interval. Deterministic single
values (n = 1 on both sides) have no noise: the interval is the point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

ONE_SIDED_ALPHA = 0.05
_NORMAL = NormalDist()


def z_value(one_sided_alpha: float = ONE_SIDED_ALPHA) -> float:
    return _NORMAL.inv_cdf(1.0 - one_sided_alpha)


def agresti_caffo(k0: int, n0: int, k1: int, n1: int, z: float) -> tuple[float, float]:
    """Agresti-Caffo interval for p1 - p0: a Wald interval after adding one success and one failure per side.

    Chosen over Newcombe's hybrid score interval after simulation (tests/test_stats.py):
    at a one-sided 5 % level Newcombe's called up to 5.4 % of no-change comparisons
    regressions (the counts are discrete), Agresti-Caffo at most 4.7 %, with the
    same power.
    """
    q0, q1 = (k0 + 1) / (n0 + 2), (k1 + 1) / (n1 + 2)
    half = z * math.sqrt(q0 * (1 - q0) / (n0 + 2) + q1 * (1 - q1) / (n1 + 2))
    d = q1 - q0
    return d - half, d + half


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile by the Cornish-Fisher expansion (error < 1e-3 for df >= 3)."""
    z = _NORMAL.inv_cdf(p)
    if math.isinf(df):
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def welch(mean0: float, sd0: float, n0: int, mean1: float, sd1: float, n1: int,
          one_sided_alpha: float = ONE_SIDED_ALPHA) -> tuple[float, float]:
    """Welch's t interval for mean1 - mean0."""
    v0 = sd0 * sd0 / n0 if n0 > 1 else 0.0
    v1 = sd1 * sd1 / n1 if n1 > 1 else 0.0
    d = mean1 - mean0
    se = math.sqrt(v0 + v1)
    if se == 0:
        return d, d
    terms = (v0 * v0 / (n0 - 1) if n0 > 1 else 0.0) + (v1 * v1 / (n1 - 1) if n1 > 1 else 0.0)
    df = (v0 + v1) ** 2 / terms if terms > 0 else math.inf
    half = t_quantile(1 - one_sided_alpha, max(df, 1.0)) * se
    return d - half, d + half


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a metric's summary in the baseline or in this run."""

    mean: float
    n: int = 1
    std: float = 0.0
    passed: int | None = None  # k of n samples that passed, for pass-rate metrics


def change_interval(base: Side, current: Side, higher_is_better: bool,
                    one_sided_alpha: float = ONE_SIDED_ALPHA) -> tuple[float, float, float]:
    """``(d, lo, hi)``: the change in the good direction and its interval.

    With pass counts on both sides the pass rate is compared; otherwise the mean.
    """
    sign = 1.0 if higher_is_better else -1.0
    sampled = base.n > 1 or current.n > 1
    if sampled and base.passed is not None and current.passed is not None:
        lo, hi = agresti_caffo(base.passed, base.n, current.passed, current.n, z_value(one_sided_alpha))
        d = current.passed / current.n - base.passed / base.n
    elif sampled:
        lo, hi = welch(base.mean, base.std, base.n, current.mean, current.std, current.n, one_sided_alpha)
        d = current.mean - base.mean
    else:
        d = lo = hi = current.mean - base.mean
    if sign < 0:
        d, lo, hi = -d, -hi, -lo
    return d, lo, hi


def verdict(d: float, lo: float, hi: float, tolerance: float = 0.0) -> str:
    """The rule in this module's docstring: regressed, improved, unstable or unchanged."""
    if hi < -tolerance:
        return "regressed"
    if lo > tolerance:
        return "improved"
    if d < -tolerance:
        return "unstable"
    return "unchanged"


def min_detectable_effect(base: Side, current: Side, one_sided_alpha: float = ONE_SIDED_ALPHA,
                          power: float = 0.8) -> float | None:
    """The smallest worsening this comparison would call *regressed* with the given power.

    None for unsampled metrics (there, any change beyond the tolerance counts).
    """
    if base.n <= 1 and current.n <= 1:
        return None
    z = z_value(one_sided_alpha) + _NORMAL.inv_cdf(power)
    if base.passed is not None and current.passed is not None:
        p = (base.passed + current.passed) / (base.n + current.n)
        p = min(max(p, 0.5 / (base.n + current.n)), 1 - 0.5 / (base.n + current.n))
        return z * math.sqrt(p * (1 - p) * (1 / base.n + 1 / current.n))
    var = (base.std**2 / base.n if base.n > 1 else 0.0) + (current.std**2 / current.n if current.n > 1 else 0.0)
    return z * math.sqrt(var)


def regression_p_value(d: float, lo: float, hi: float, one_sided_alpha: float = ONE_SIDED_ALPHA) -> float:
    """One-sided p-value of "worse", from a `change_interval` result (normal approximation)."""
    half = (hi - lo) / 2
    if half <= 0:
        return 0.0 if d < 0 else 1.0
    return _NORMAL.cdf(d / (half / z_value(one_sided_alpha)))


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
