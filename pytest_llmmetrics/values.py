"""Value rules shared by settings, marker arguments, bounds, replies and stored metrics: one home, one wording."""

from __future__ import annotations

import math
import re

# The largest metric value taken: far beyond any count, latency or price, and small enough that sums,
# squares and variances of thousands of values never overflow a float.
LIMIT = 1e15
DEVICES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def is_number(value: object) -> bool:
    """An int or float (not a bool), finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number_problem(value: object, lo: float | None = None, hi: float | None = None, *,
                   lo_open: bool = False, integer: bool = False) -> str | None:
    """What is wrong with ``value`` as a number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), or None.

    The text continues a sentence that names the value, e.g. ``f"{name} {problem}"``.
    """
    kind = "an int" if integer else "a number"
    if not is_number(value) or (integer and not isinstance(value, int)):
        return f"must be {kind}, got {value!r} ({type(value).__name__})"
    assert isinstance(value, (int, float))
    low = lo is not None and (value < lo or (lo_open and value == lo))
    if low or (hi is not None and value > hi):
        parts = [f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else "", f"<= {hi:g}" if hi is not None else ""]
        return f"must be {' and '.join(p for p in parts if p)}, got {value!r}"
    return None


def threshold_problem(value: object) -> str | None:
    """What is wrong with a similarity threshold (a number in (0, 1]), or None."""
    if is_number(value) and 0 < value <= 1:  # type: ignore[operator]
        return None
    return f"{value!r} must be a number in (0, 1], e.g. 0.85"


def device_problem(value: object) -> str | None:
    """What is wrong with an embedding device name, or None."""
    if isinstance(value, str) and _DEVICE.match(value):
        return None
    return f"{value!r} is not one of {DEVICES}"
