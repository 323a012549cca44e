"""The regression rule for sampled metrics, checked by seeded simulation, and its building blocks."""

from __future__ import annotations

import random

import pytest

from pytest_llmmetrics.stats import (
    Side,
    benjamini_hochberg,
    change_interval,
    min_detectable_effect,
    agresti_caffo,
    regression_p_value,
    t_quantile,
    verdict,
)

BASE_RATES = (0.5, 0.8, 0.9, 0.95)
RUNS = 2000


def simulate(p_base: float, p_current: float, n: int, seed: int) -> dict[str, float]:
    """Share of verdicts when baseline and current are each n samples at the given true pass rates."""
    rng = random.Random(seed)
    counts = {"regressed": 0, "improved": 0, "unstable": 0, "unchanged": 0}
    for _ in range(RUNS):
        k0 = sum(rng.random() < p_base for _ in range(n))
        k1 = sum(rng.random() < p_current for _ in range(n))
        d, lo, hi = change_interval(Side(k0 / n, n, passed=k0), Side(k1 / n, n, passed=k1), higher_is_better=True)
        counts[verdict(d, lo, hi)] += 1
    return {k: v / RUNS for k, v in counts.items()}


@pytest.mark.parametrize("p", BASE_RATES)
@pytest.mark.parametrize("n", [20, 75])
def test_no_true_change_is_rarely_called_a_regression(p, n):
    rates = simulate(p, p, n, seed=int(p * 1000) + n)
    assert rates["regressed"] <= 0.05, rates


@pytest.mark.parametrize("p", BASE_RATES)
def test_a_20_point_drop_with_20_samples_is_flagged(p):
    rates = simulate(p, p - 0.2, 20, seed=int(p * 1000) + 1)
    assert rates["regressed"] + rates["unstable"] >= 0.80, rates


@pytest.mark.parametrize("p", BASE_RATES)
def test_a_20_point_drop_with_75_samples_is_a_regression(p):
    rates = simulate(p, p - 0.2, 75, seed=int(p * 1000) + 2)
    assert rates["regressed"] >= 0.80, rates


def test_agresti_caffo_known_values():
    # By hand: p~1 = 57/72, p~0 = 49/82, d = 0.19411, se = 0.072273 -> 0.0525 to 0.3358
    lo, hi = agresti_caffo(48, 80, 56, 70, 1.959964)
    assert lo == pytest.approx(0.0525, abs=1e-3) and hi == pytest.approx(0.3358, abs=1e-3)


def test_t_quantile_is_close_to_tables():
    assert t_quantile(0.95, 5) == pytest.approx(2.015, abs=2e-3)
    assert t_quantile(0.95, 30) == pytest.approx(1.697, abs=1e-3)


def test_direction_and_single_values():
    # Lower is better (latency): going from 1.0 s to 1.5 s is a regression, beyond a 0.2 s tolerance.
    d, lo, hi = change_interval(Side(1.0), Side(1.5), higher_is_better=False)
    assert (d, lo, hi) == (-0.5, -0.5, -0.5)
    assert verdict(d, lo, hi, tolerance=0.2) == "regressed"
    assert verdict(d, lo, hi, tolerance=0.6) == "unchanged"
    assert verdict(*change_interval(Side(1.0), Side(0.5), higher_is_better=False)) == "improved"


def test_means_of_samples_use_welch():
    noisy = change_interval(Side(0.80, 10, 0.10), Side(0.75, 10, 0.10), higher_is_better=True)
    assert verdict(*noisy) == "unstable"
    clear = change_interval(Side(0.80, 50, 0.02), Side(0.70, 50, 0.02), higher_is_better=True)
    assert verdict(*clear) == "regressed"


def test_min_detectable_effect_shrinks_with_samples():
    small = min_detectable_effect(Side(0.8, 20, passed=16), Side(0.8, 20, passed=16))
    large = min_detectable_effect(Side(0.8, 200, passed=160), Side(0.8, 200, passed=160))
    assert small is not None and large is not None and 0 < large < small < 0.5
    assert min_detectable_effect(Side(1.0), Side(1.0)) is None


def test_benjamini_hochberg():
    assert benjamini_hochberg([0.001, 0.04, 0.03, 0.5], q=0.05) == [True, False, False, False]
    assert benjamini_hochberg([0.01, 0.02, 0.03, 0.04], q=0.05) == [True, True, True, True]
    clear = change_interval(Side(0.9, 75, passed=68), Side(0.6, 75, passed=45), higher_is_better=True)
    assert regression_p_value(*clear) < 0.001
    same = change_interval(Side(0.8, 75, passed=60), Side(0.8, 75, passed=60), higher_is_better=True)
    assert regression_p_value(*same) == pytest.approx(0.5, abs=0.01)
