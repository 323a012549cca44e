"""How each metric moved against the baseline: rows with a verdict, tolerances, and why it moved."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from . import stats
    from .store import Tests

ORDER = ("regressed", "unstable", "improved", "new", "gone", "unchanged")
_RANK = {verdict: rank for rank, verdict in enumerate(ORDER)}


@dataclass(frozen=True)
class Tolerances:
    """``--llm-tolerance "0.01,similarity:0.02,latency_s:10%"``: a bare value is the default.

    A value is an absolute change in the metric's unit, or with ``%`` relative
    to the baseline value. Looked up by metric name, then by kind
    (``similarity`` covers ``similarity[snapshot]``). Pass rates of sampled
    checks take absolute values (``0.05`` is 5 points). Built in, overridable:
    ``latency_s:50%``.
    """

    default: tuple[float, bool] = (0.0, False)
    by_name: dict[str, tuple[float, bool]] = field(default_factory=dict)

    # Wall-clock latency is noisy from run to run even for the same reply: unless
    # told otherwise, only a change of more than 50 % counts.
    BUILT_IN = {"latency_s": (0.5, True)}

    @classmethod
    def parse(cls, spec: str | None) -> Tolerances:
        if not spec:
            return cls()
        default = (0.0, False)
        by_name: dict[str, tuple[float, bool]] = {}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            name, _, value = part.rpartition(":")
            match = re.fullmatch(r"(\d+(?:\.\d+)?)(%?)", value.strip())
            if not match:
                raise ConfigError(
                    f"--llm-tolerance: {part!r} is not NAME:VALUE; write e.g. "
                    "'similarity:0.02,latency_s:10%' (a bare value sets the default)"
                )
            parsed = (float(match.group(1)) / (100 if match.group(2) else 1), bool(match.group(2)))
            if name.strip():
                by_name[name.strip()] = parsed
            else:
                default = parsed
        return cls(default, by_name)

    def for_metric(self, name: str, kind: str, base_value: float) -> float:
        value, relative = (self.by_name.get(name) or self.by_name.get(kind) or self.BUILT_IN.get(kind)
                           or self.default)
        return abs(base_value) * value if relative else value


@dataclass(slots=True)  # not frozen: a report can have tens of thousands of rows to build
class Row:
    """One metric of one test in the delta report."""

    test: str
    metric: str
    verdict: str
    baseline: str = ""
    current: str = ""
    delta: str = ""
    why: str = ""
    detectable: str = ""  # the smallest worsening the samples could have called a regression
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and a report can have tens of thousands of rows.
        return {"test": self.test, "metric": self.metric, "verdict": self.verdict, "baseline": self.baseline,
                "current": self.current, "delta": self.delta, "why": self.why, "detectable": self.detectable,
                "values": self.values}


def _numbers(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the JSON report keeps of a side: enough to recompute the verdict."""
    if entry is None:
        return None
    return {"mean": entry["mean"], "n": entry["n"], "passed": entry.get("passed"), "std": entry.get("std")}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _side(entry: dict[str, Any]) -> stats.Side:
    from . import stats

    return stats.Side(float(entry["mean"]), int(entry["n"]), float(entry.get("std") or 0.0), entry.get("passed"))


def _is_rate(base: dict[str, Any], cur: dict[str, Any]) -> bool:
    sampled = base["n"] > 1 or cur["n"] > 1
    return sampled and base.get("passed") is not None and cur.get("passed") is not None


def _show(entry: dict[str, Any], rate: bool) -> str:
    if rate:
        return f"{entry['passed'] / entry['n']:.0%} ({entry['passed']}/{entry['n']})"
    return _fmt(entry["mean"]) + (f" (n={entry['n']})" if entry["n"] > 1 else "")


def why_moved(base_fp: dict[str, Any] | None, cur_fp: dict[str, Any] | None) -> str:
    """What changed between the runs, from the tests' fingerprints."""
    if not base_fp or not cur_fp:
        return ""
    labels = {"model": "model changed", "prompt": "prompt changed", "params": "sampling parameters changed",
              "embedding_model": "embedding model changed"}
    return ", ".join(label for key, label in labels.items() if base_fp.get(key) != cur_fp.get(key))


def compare(baseline: Tests | None, current: Tests, tolerances: Tolerances, *, full_run: bool) -> list[Row]:
    """Every metric of ``current`` against ``baseline``; with ``full_run``, also the baseline's gone ones."""
    from . import stats  # imported at the session's end, not at start-up

    rows: list[Row] = []
    tested: list[tuple[int, float]] = []  # (row index, one-sided p of "worse") of sampled comparisons
    base_tests = baseline or {}
    for test, cur_test in current.items():
        base_test = base_tests.get(test, {})
        why = why_moved(base_test.get("fingerprint"), cur_test.get("fingerprint"))
        for metric, cur in cur_test["metrics"].items():
            base = base_test.get("metrics", {}).get(metric)
            if base is None:
                rows.append(Row(test, metric, "new", current=_show(cur, False), values={"current": _numbers(cur)}))
                continue
            higher = cur["higher_is_better"]
            if base["n"] == 1 and cur["n"] == 1:
                # Deterministic values: the change is the point itself, there is no noise to account for.
                raw = cur["mean"] - base["mean"]
                d = raw if higher else -raw
                tolerance = tolerances.for_metric(metric, cur.get("kind", metric), base["mean"])
                verdict = stats.verdict(d, d, d, tolerance)
                rows.append(Row(test, metric, verdict, _fmt(base["mean"]), _fmt(cur["mean"]), f"{raw:+.4g}",
                                why if verdict != "unchanged" else "", "",
                                {"baseline": _numbers(base), "current": _numbers(cur), "tolerance": tolerance}))
                continue
            rate = _is_rate(base, cur)
            b, c = _side(base), _side(cur)
            if not rate:
                b, c = stats.Side(b.mean, b.n, b.std), stats.Side(c.mean, c.n, c.std)
            d, lo, hi = stats.change_interval(b, c, higher)
            base_value = b.passed / b.n if rate and b.passed is not None else b.mean
            tolerance = tolerances.for_metric(metric, cur.get("kind", metric), base_value)
            verdict = stats.verdict(d, lo, hi, tolerance)
            raw = (c.passed / c.n - b.passed / b.n) if rate and b.passed is not None and c.passed is not None \
                else c.mean - b.mean
            mde = stats.min_detectable_effect(b, c)
            row = Row(
                test, metric, verdict, _show(base, rate), _show(cur, rate),
                f"{raw * 100:+.0f} pts" if rate else f"{raw:+.4g}",
                why if verdict != "unchanged" else "",
                (f"{mde * 100:.0f} pts" if rate else _fmt(mde)) if mde is not None else "",
                {"baseline": _numbers(base), "current": _numbers(cur), "change_interval": [lo, hi],
                 "tolerance": tolerance},
            )
            # The family for false-discovery control: every sampled comparison, not only the alarming ones.
            tested.append((len(rows), stats.regression_p_value(d, lo, hi)))
            rows.append(row)
        if full_run:
            for metric, base in base_test.get("metrics", {}).items():
                if metric not in cur_test["metrics"]:
                    rows.append(Row(test, metric, "gone", baseline=_show(base, False),
                                    values={"baseline": _numbers(base)}))
    if full_run:
        for test, base_test in base_tests.items():
            if test not in current:
                for metric, base in base_test.get("metrics", {}).items():
                    rows.append(Row(test, metric, "gone", baseline=_show(base, False),
                                    values={"baseline": _numbers(base)}))
    # With many sampled metrics some look regressed by chance: hold the false discovery rate at 5 %.
    if len(tested) > 1:
        keep = stats.benjamini_hochberg([p for _, p in tested])
        for (index, _), rejected in zip(tested, keep):
            if not rejected and rows[index].verdict == "regressed":
                rows[index].verdict = "unstable"
    rows.sort(key=lambda r: (_RANK[r.verdict], r.test, r.metric))
    return rows


def totals(rows: list[Row]) -> dict[str, int]:
    counts = {v: 0 for v in ORDER}
    for row in rows:
        counts[row.verdict] += 1
    return counts
