"""The shared value rules: one wording for every number, threshold and device the plugin checks."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from pytest_llmmetrics.values import LIMIT, device_problem, is_number, number_problem, threshold_problem


@pytest.mark.parametrize("value", [0, 1, -3, 2.5, LIMIT])
def test_numbers(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [True, False, math.nan, math.inf, -math.inf, "1", None, Decimal("1"), [1]])
def test_not_numbers(value):
    assert not is_number(value)


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((0.5, 0, 1), {}, None),
        ((0, 0, 1), {"lo_open": True}, "must be > 0 and <= 1, got 0"),
        ((3, 0, 2), {}, "must be >= 0 and <= 2, got 3"),
        ((-1, 0), {}, "must be >= 0, got -1"),
        ((5, None, 4), {}, "must be <= 4, got 5"),
        (("hot", 0, 2), {}, "must be a number, got 'hot' (str)"),
        ((True, 0, 2), {}, "must be a number, got True (bool)"),
        ((math.nan,), {}, "must be a number, got nan (float)"),
        ((1.5, 1), {"integer": True}, "must be an int, got 1.5 (float)"),
        ((0, 1), {"integer": True}, "must be >= 1, got 0"),
        ((7, 1), {"integer": True}, None),
    ],
)
def test_number_problem(args, kwargs, problem):
    assert number_problem(*args, **kwargs) == problem


@pytest.mark.parametrize("value", [0.01, 0.85, 1, 1.0])
def test_thresholds(value):
    assert threshold_problem(value) is None


@pytest.mark.parametrize("value", [0, -0.5, 1.01, "0.8", True, math.nan, None])
def test_bad_thresholds(value):
    assert threshold_problem(value) == f"{value!r} must be a number in (0, 1], e.g. 0.85"


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_devices(value):
    assert device_problem(value) is None


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "CPU", "", None, 0])
def test_bad_devices(value):
    assert device_problem(value) == f"{value!r} is not one of auto, cpu, cuda, cuda:N or mps"
