"""Pooled comparisons: each metric kind across the suite, each track and each group, paired by test."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_llmmetrics.baseline import stats
from pytest_llmmetrics.baseline.compare import Tolerances, noise_floor, scale
from pytest_llmmetrics.tracks import TRACKS, default_track, module_of

if TYPE_CHECKING:
    from pytest_llmmetrics.baseline.store import Tests

SCOPES = ("suite", "track", "group")
# Run-to-run noise that every test shares (a busy machine slows every call) does not average out over tests:
# these kinds keep their tolerance (built in: 50 % for latency) when pooled. Others are judged by the interval.
SHARED_NOISE = ("latency_s",)
_DIRECTION: dict[bool | None, str | None] = {True: "higher", False: "lower", None: None}
_ORDER = ("regressed", "unstable", "changed", "improved", "unchanged")


@dataclass(slots=True)
class Aggregate:
    """One metric kind pooled over the tests of one scope (the suite, a track or a group)."""

    scope: str
    name: str
    metric: str
    tests: int
    baseline: float
    current: float
    delta: float
    low: float  # the interval of ``delta`` (current - baseline), one-sided (1 - POOLED_ALPHA) bounds
    high: float
    verdict: str
    direction: str | None  # "higher", "lower" or None (no direction: a move is only "changed")
    binary: bool  # pass rates: shown in % and points
    left_out: int = 0  # tests with the metric on both sides but a different number of samples
    exact: bool = False  # every test moved by the same amount (often: none moved): no chance involved
    p_worse: float = 1.0
    p_better: float = 1.0

    @property
    def label(self) -> str:
        return "suite" if self.scope == "suite" else f"{self.scope} {self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "name": self.name, "metric": self.metric, "tests": self.tests,
                "baseline": self.baseline, "current": self.current, "delta": self.delta, "low": self.low,
                "high": self.high, "verdict": self.verdict, "direction": self.direction, "binary": self.binary,
                "left_out": self.left_out}


# A scope's tests: test -> [sum of baseline means, sum of current means, metrics] (a test's metrics of one kind).
_Sums = dict[str, list[float]]


def pooled(baseline: Tests | None, current: Tests, tolerances: Tolerances | None = None, *,
           same_run: bool = False) -> list[Aggregate]:
    """Every metric kind pooled over the suite, each track and each group.

    A test counts once per scope and metric: the mean of its metrics of that
    name before any ``[...]`` (``contains[a]`` and ``contains[b]`` are one
    ``contains``; a check renamed with ``.named("essay")`` is its own), on each
    side, and the test's difference is the change of that mean. Only tests
    with the metric on both sides with the same number of samples are paired;
    a changed sample count skews the differences (in simulation, 1 sample
    against 10 at a 97 % pass rate called a false regression in 48 % of runs).
    Scopes with fewer than two such tests are not compared. ``same_run``: both
    sides were measured in one run (the model matrix), so no noise is shared
    between runs and `SHARED_NOISE` kinds are judged by the interval too.
    """
    tolerances = tolerances or Tolerances()
    base_tests = baseline or {}
    # (kind, direction) -> (scope, name) -> test -> sums: one pass over the metrics.
    scopes: dict[tuple[str, bool | None], dict[tuple[str, str], _Sums]] = {}
    binary: dict[tuple[str, bool | None], bool] = {}
    kinds: dict[tuple[str, bool | None], str] = {}
    left_out: dict[tuple[str, bool | None], set[str]] = defaultdict(set)
    for test, cur_test in current.items():
        base_test = base_tests.get(test)
        if not base_test:
            continue
        base_metrics = base_test.get("metrics", {})
        module = ""
        for name, cur in cur_test["metrics"].items():
            base = base_metrics.get(name)
            kind = cur.get("kind", name)
            if base is None or base.get("kind", name) != kind:
                continue
            key = (name.split("[", 1)[0], cur.get("higher_is_better"))  # contains[a] and contains[b]: contains
            kinds[key] = kind
            if base["n"] != cur["n"]:
                left_out[key].add(test)
                continue
            binary[key] = binary.get(key, True) and scale(base) == "binary" and scale(cur) == "binary"
            group = cur.get("group")
            if not group:
                group = module = module or module_of(test)
            b, c = float(base["mean"]), float(cur["mean"])
            found = scopes.setdefault(key, {})
            for where in (("suite", "suite"), ("track", cur.get("track") or default_track(kind)), ("group", group)):
                sums = found.setdefault(where, {}).get(test)
                if sums is None:
                    found[where][test] = [b, c, 1.0]
                else:
                    sums[0] += b
                    sums[1] += c
                    sums[2] += 1.0
    track_rank = {track: i for i, track in enumerate(TRACKS)}
    scope_rank = {scope: i for i, scope in enumerate(SCOPES)}
    aggregates: list[Aggregate] = []
    for key, found in scopes.items():
        for (scope, name), by_test in found.items():
            aggregate = _compare(scope, name, key[0], kinds[key], key[1], binary[key], by_test,
                                 None if same_run else tolerances)
            if aggregate is not None:
                aggregate.left_out = len(left_out[key])
                aggregates.append(aggregate)
    control_false_discoveries(aggregates)
    aggregates.sort(key=lambda a: (scope_rank[a.scope], track_rank.get(a.name, 0), a.name, a.metric,
                                   str(a.direction)))
    return aggregates


def _compare(scope: str, name: str, metric: str, kind: str, higher: bool | None, binary: bool, sums: _Sums,
             tolerances: Tolerances | None) -> Aggregate | None:
    if len(sums) < 2:
        return None
    base = [b / k for b, _, k in sums.values()]
    cur = [c / k for _, c, k in sums.values()]
    base_mean, cur_mean = math.fsum(base) / len(base), math.fsum(cur) / len(cur)
    tolerance = noise_floor(kind, base_mean, cur_mean)
    if kind in SHARED_NOISE and tolerances is not None:
        tolerance = max(tolerance, tolerances.for_metric(kind, kind, base_mean))
    directed = higher is not None
    alpha = stats.POOLED_ALPHA if directed else stats.POOLED_ALPHA / 2
    change = stats.paired([c - b for b, c in zip(base, cur)], higher, tolerance, alpha)
    sign = -1.0 if higher is False else 1.0
    low, high = sorted((sign * change.lo, sign * change.hi))
    if binary:  # rates: the current mean lies in [0, 1], so the change in [-baseline, 1 - baseline]
        low, high = max(low, -base_mean), min(high, 1.0 - base_mean)
    return Aggregate(scope, name, metric, len(sums), base_mean, cur_mean, cur_mean - base_mean, low, high,
                     stats.verdict(change, tolerance, directed), _DIRECTION[higher], binary,
                     exact=change.lo == change.hi, p_worse=change.p_worse, p_better=change.p_better)


def control_false_discoveries(aggregates: list[Aggregate]) -> None:
    """The false discovery rate of the pooled family held at `stats.POOLED_ALPHA` (Benjamini-Hochberg).

    As for per-metric rows: a regression that does not survive is *unstable*,
    an improvement or a change that does not survive is *unchanged*. The
    family holds the comparisons where chance plays a part, each once: exact
    ones (every test moved by the same amount, typically none) cannot be false
    discoveries, and a track or group row that pools the same tests as another
    row is the same comparison, so neither dilutes the others.
    """
    q = stats.POOLED_ALPHA
    distinct: dict[tuple[Any, ...], list[Aggregate]] = {}
    for a in aggregates:
        if not a.exact:
            distinct.setdefault(_same(a), []).append(a)
    family = [rows[0] for rows in distinct.values()]
    families: tuple[tuple[str, str, Callable[[Aggregate], float]], ...] = (
                ("regressed", "unstable", lambda a: a.p_worse if a.direction else 1.0),
                ("improved", "unchanged", lambda a: a.p_better if a.direction else 1.0),
                ("changed", "unchanged", lambda a: 1.0 if a.direction else 2 * min(a.p_worse, a.p_better)))
    for verdict, demoted, p_value in families:
        if not any(a.verdict == verdict for a in family):
            continue
        keep = stats.benjamini_hochberg([p_value(a) for a in family], q)
        for first, rejected in zip(family, keep):
            if first.verdict == verdict and not rejected:
                for aggregate in distinct[_same(first)]:
                    aggregate.verdict = demoted


def _same(a: Aggregate) -> tuple[Any, ...]:
    """What makes two pooled rows the same comparison: the metric and the numbers of the same tests."""
    return a.metric, a.direction, a.tests, a.baseline, a.current, a.low, a.high


def totals(aggregates: Sequence[Aggregate]) -> dict[str, int]:
    counts = {verdict: 0 for verdict in _ORDER}
    for aggregate in aggregates:
        counts[aggregate.verdict] += 1
    return counts


def distinct(aggregates: Sequence[Aggregate]) -> list[Aggregate]:
    """Without the track and group rows that pool the same tests as the suite row of their metric (same numbers)."""
    suite = {_same(a) for a in aggregates if a.scope == "suite"}
    return [a for a in aggregates if a.scope == "suite" or _same(a) not in suite]


def shown(aggregates: Sequence[Aggregate], *, verbose: bool) -> list[Aggregate]:
    """What the terminal and the GitHub summary list: the suite and each track, groups only when they moved (all
    with ``-v``); rows that repeat the suite row (`distinct`) are left out."""
    return [a for a in distinct(aggregates) if a.scope != "group" or verbose or a.verdict != "unchanged"]


def format_value(value: float, binary: bool) -> str:
    return f"{value:.0%}" if binary else f"{value:.4g}"


def format_delta(value: float, binary: bool) -> str:
    return f"{value * 100:+.1f} pts" if binary else f"{value:+.3g}"


def format_interval(a: Aggregate) -> str:
    if a.binary:
        return f"[{a.low * 100:+.1f}, {a.high * 100:+.1f}]"
    return f"[{a.low:+.3g}, {a.high:+.3g}]"
