"""The regression rule for sampled metrics, checked exactly and by seeded simulation, and its building blocks.

Figures quoted in the README ("The rule") come from these tests.
"""

from __future__ import annotations

import math
import random

import pytest

from pytest_llmmetrics.baseline.stats import (
    Side,
    agresti_caffo,
    benjamini_hochberg,
    change,
    min_detectable_effect,
    rate_critical_value,
    samples_to_detect,
    t_cdf,
    t_quantile,
    verdict,
)

BASE_RATES = (0.5, 0.8, 0.9, 0.95)
RUNS = 2000


def rate(k: int, n: int) -> Side:
    return Side(k / n, n, binary=True)


def binomial(n: int, p: float) -> list[float]:
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def verdict_table(n0: int, n1: int, tolerance: float = 0.0) -> dict[tuple[int, int], str]:
    """The verdict for every possible pair of pass counts."""
    return {(k0, k1): verdict(change(rate(k0, n0), rate(k1, n1), True, tolerance), tolerance)
            for k0 in range(n0 + 1) for k1 in range(n1 + 1)}


def exact_share(table: dict[tuple[int, int], str], n0: int, n1: int, p0: float, p1: float, which: str) -> float:
    b0, b1 = binomial(n0, p0), binomial(n1, p1)
    return sum(b0[k0] * b1[k1] for (k0, k1), v in table.items() if v == which)


SIZES = [(2, 2), (3, 3), (5, 5), (8, 8), (10, 10), (15, 15), (20, 20), (30, 30), (50, 50), (75, 75), (100, 100),
         (5, 10), (10, 5), (10, 30), (75, 20)]


@pytest.mark.parametrize(("n0", "n1"), SIZES)
def test_no_true_change_is_called_a_regression_at_most_5_percent_of_the_time_exactly(n0, n1):
    """Exact, not simulated: every pair of counts weighed by its probability, at pass rates 1 % ... 99 %."""
    table = verdict_table(n0, n1)
    worst = max(exact_share(table, n0, n1, p / 100, p / 100, "regressed") for p in range(1, 100))
    assert worst <= 0.05, worst
    worst_improved = max(exact_share(table, n0, n1, p / 100, p / 100, "improved") for p in range(1, 100))
    assert worst_improved <= 0.05, worst_improved


@pytest.mark.parametrize("p", BASE_RATES)
def test_a_20_point_drop_with_75_samples_a_side_is_a_regression_in_at_least_80_percent_exactly(p):
    table = verdict_table(75, 75)
    assert exact_share(table, 75, 75, p, p - 0.2, "regressed") >= 0.80


def simulate(p_base: float, p_current: float, n: int, seed: int) -> dict[str, float]:
    """Share of verdicts when baseline and current are each n samples at the given true pass rates."""
    rng = random.Random(seed)
    counts = {"regressed": 0, "improved": 0, "unstable": 0, "unchanged": 0}
    for _ in range(RUNS):
        k0 = sum(rng.random() < p_base for _ in range(n))
        k1 = sum(rng.random() < p_current for _ in range(n))
        counts[verdict(change(rate(k0, n), rate(k1, n), True))] += 1
    return {k: v / RUNS for k, v in counts.items()}


@pytest.mark.parametrize("p", (0.5, 0.6, 0.7, 0.8, 0.9, 0.95))
@pytest.mark.parametrize("n", [5, 10, 20, 75])
def test_simulated_no_change_agrees_with_the_exact_figures(p, n):
    """The simulation reproduces the exact share (within 3 standard errors of 2000 runs) that is at most 5 %."""
    rates = simulate(p, p, n, seed=int(p * 1000) + n)
    exact = exact_share(verdict_table(n, n), n, n, p, p, "regressed")
    assert exact <= 0.05
    assert abs(rates["regressed"] - exact) <= 3 * math.sqrt(0.05 * 0.95 / RUNS), (rates, exact)
    assert rates["regressed"] + rates["improved"] + rates["unstable"] <= 0.10 + 3 * math.sqrt(0.1 * 0.9 / RUNS)


@pytest.mark.parametrize("p", BASE_RATES)
def test_simulated_20_point_drop_with_75_samples(p):
    rates = simulate(p, p - 0.2, 75, seed=int(p * 1000) + 2)
    exact = exact_share(verdict_table(75, 75), 75, 75, p, p - 0.2, "regressed")
    assert exact >= 0.80
    assert abs(rates["regressed"] - exact) <= 3 * math.sqrt(0.2 * 0.8 / RUNS), (rates, exact)


def test_the_critical_value_is_calibrated_per_sample_size_and_never_below_nominal():
    assert rate_critical_value(10, 10) > 1.70  # the nominal 1.645 lets through 5.8 % at n = 10
    assert rate_critical_value(20, 20) == pytest.approx(1.6449, abs=1e-4)
    assert rate_critical_value(75, 75) == pytest.approx(1.658, abs=1e-3)
    assert rate_critical_value(500, 500) == pytest.approx(1.6449 * 1.01, abs=1e-4)  # past exact enumeration


def test_agresti_caffo_known_values():
    # By hand: p~1 = 57/72, p~0 = 49/82, d = 0.19411, se = 0.072273 -> 0.0525 to 0.3358
    lo, hi = agresti_caffo(48, 80, 56, 70, 1.959964)
    assert lo == pytest.approx(0.0525, abs=1e-3) and hi == pytest.approx(0.3358, abs=1e-3)


def test_t_distribution_matches_tables():
    assert t_quantile(0.95, 5) == pytest.approx(2.015048, abs=1e-5)
    assert t_quantile(0.95, 30) == pytest.approx(1.697261, abs=1e-5)
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)  # where series approximations fail
    assert t_quantile(0.95, 2) == pytest.approx(2.919986, abs=1e-5)
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    assert t_cdf(2.015048, 5) == pytest.approx(0.95, abs=1e-6)


def test_direction_and_single_values():
    # Lower is better (latency): going from 1.0 s to 1.5 s is a regression, beyond a 0.2 s tolerance.
    c = change(Side(1.0), Side(1.5), higher_is_better=False)
    assert (c.d, c.lo, c.hi) == (-0.5, -0.5, -0.5)
    assert verdict(c, tolerance=0.2) == "regressed"
    assert verdict(c, tolerance=0.6) == "unchanged"
    assert verdict(change(Side(1.0), Side(0.5), higher_is_better=False)) == "improved"
    assert verdict(change(Side(1.0), Side(1.5), higher_is_better=None), directed=False) == "changed"


def test_means_of_samples_use_welch():
    noisy = change(Side(0.80, 10, 0.10), Side(0.75, 10, 0.10), higher_is_better=True)
    assert verdict(noisy) == "unchanged"
    clear = change(Side(0.80, 50, 0.02), Side(0.70, 50, 0.02), higher_is_better=True)
    assert verdict(clear) == "regressed"
    # Significantly worse, but the interval still reaches inside a 0.1 tolerance: cannot tell.
    between = change(Side(0.80, 50, 0.1), Side(0.72, 50, 0.1), higher_is_better=True)
    assert between.hi < 0 and verdict(between, tolerance=0.1) == "unstable"
    # Samples with no spread: the difference is exact.
    assert verdict(change(Side(13, 5, 0.0), Side(43, 5, 0.0), higher_is_better=False)) == "regressed"


def simulate_means(mean0: float, mean1: float, sd: float, n: int, seed: int, skewed: bool = False) -> float:
    """Share of *regressed* verdicts on means of n samples a side (normal, or skewed like latencies)."""
    rng = random.Random(seed)

    def draw(mean: float) -> list[float]:
        if skewed:
            return [rng.lognormvariate(math.log(mean), sd) for _ in range(n)]
        return [rng.gauss(mean, sd) for _ in range(n)]

    hits = 0
    for _ in range(RUNS):
        sides = []
        for mean in (mean0, mean1):
            xs = draw(mean)
            m = sum(xs) / n
            sides.append(Side(m, n, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))))
        hits += verdict(change(sides[0], sides[1], True)) == "regressed"
    return hits / RUNS


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_welch_holds_its_false_alarm_rate_on_normal_samples(n):
    # Welch is exact for normal samples: 5 %, within 3 standard errors of 2000 simulated runs.
    assert simulate_means(10.0, 10.0, 2.0, n, seed=n) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / RUNS)


def test_welch_finds_a_one_standard_deviation_drop_with_20_samples():
    assert simulate_means(10.0, 8.0, 2.0, 20, seed=7) >= 0.80


def test_min_detectable_effect_and_samples_to_settle():
    small = min_detectable_effect(rate(16, 20), rate(16, 20))
    large = min_detectable_effect(rate(160, 200), rate(160, 200))
    assert small is not None and large is not None and 0 < large < small < 0.5
    assert min_detectable_effect(Side(1.0), Side(1.0)) is None
    n = samples_to_detect(rate(8, 10), rate(8, 10), 0.10)
    assert n is not None and 150 <= n <= 250
    assert min_detectable_effect(rate(round(0.8 * n), n), rate(round(0.8 * n), n)) <= 0.105


def test_benjamini_hochberg():
    assert benjamini_hochberg([0.001, 0.04, 0.03, 0.5], q=0.05) == [True, False, False, False]
    assert benjamini_hochberg([0.01, 0.02, 0.03, 0.04], q=0.05) == [True, True, True, True]
    clear = change(rate(68, 75), rate(45, 75), higher_is_better=True)
    assert clear.p_worse < 0.001
    same = change(rate(60, 75), rate(60, 75), higher_is_better=True)
    assert same.p_worse == pytest.approx(0.5, abs=0.01)
    # p_worse is 5 % exactly where the calibrated bound meets the tolerance: consistent with the verdict.
    for k1 in range(0, 11):
        c = change(rate(8, 10), rate(k1, 10), True)
        assert (verdict(c) == "regressed") == (c.p_worse < 0.05)
