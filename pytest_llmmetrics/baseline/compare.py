"""How each metric moved against the baseline: rows with a verdict, tolerances, and why it moved."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_llmmetrics.baseline import (
    stats,  # stdlib only; this module itself is imported at the session's end
)
from pytest_llmmetrics.errors import ConfigError

if TYPE_CHECKING:
    from pytest_llmmetrics.baseline.store import Tests

ORDER = ("regressed", "unstable", "changed", "improved", "new", "gone", "unchanged")
_RANK = {verdict: rank for rank, verdict in enumerate(ORDER)}

# Changes this small are floating-point noise, never a verdict: embedding similarities differ by ~1e-7
# with the texts that share a batch, and by ~1e-4 between fp16 on a GPU and fp32 on a CPU.
NOISE_FLOOR = {"similarity": 1e-3}
_RELATIVE_NOISE = 1e-6
# "The tolerance that matters" for telling whether a sampled comparison settled anything, when no
# tolerance is set: 10 points of a pass rate, 10 % of a mean.
PRACTICAL_RATE = 0.10
PRACTICAL_RELATIVE = 0.10
BUILT_IN_KINDS = ("latency_s", "tokens", "cost", "similarity", "pass_rate")


@dataclass(frozen=True)
class Tolerances:
    """``--llm-tolerance "0.01,similarity:0.02,latency_s:10%"``: a bare value is the default.

    A value is an absolute change in the metric's unit, or with ``%`` relative
    to the baseline value. Looked up by metric name, then by kind
    (``similarity`` covers ``similarity[snapshot]``). Pass rates of sampled
    yes/no checks take absolute values (``0.05`` is 5 points). Built in,
    overridable: ``latency_s:50%``.
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
        default: tuple[float, bool] | None = None
        by_name: dict[str, tuple[float, bool]] = {}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            name, colon, value = part.rpartition(":")
            name, value = name.strip(), value.strip()
            if colon and not name:
                raise ConfigError(f"--llm-tolerance: {part!r} has no name before the ':'; write NAME:VALUE, "
                                  "or a bare VALUE for the default")
            parsed = _tolerance_value(part, value)
            if name:
                if name in by_name:
                    raise ConfigError(f"--llm-tolerance: {name!r} is given twice; give each name once")
                by_name[name] = parsed
            elif default is not None:
                raise ConfigError(
                    f"--llm-tolerance: two default values ({spec!r}); give one bare value for the default and "
                    "NAME:VALUE for the others, e.g. '0.01,similarity:0.02'"
                )
            else:
                default = parsed
        return cls(default or (0.0, False), by_name)

    def for_metric(self, name: str, kind: str, base_value: float) -> float:
        value, relative = (self.by_name.get(name) or self.by_name.get(kind) or self.BUILT_IN.get(kind)
                           or self.default)
        return abs(base_value) * value if relative else value

    def is_set(self, name: str, kind: str) -> bool:
        return name in self.by_name or kind in self.by_name or self.default[0] > 0

    def unknown_names(self, known: Iterable[str], rates: Iterable[str] = ()) -> list[str]:
        """Warnings for names that match no metric or kind of this run or the baseline, and for
        pass-rate tolerances above 1 (``rates``: names and kinds compared as pass rates)."""
        known = sorted(set(known) | set(BUILT_IN_KINDS))
        rates = set(rates) | {"pass_rate"}
        notes = [f"--llm-tolerance: {name}:{value:g} is more than 1, and a pass rate moves between 0 and 1: "
                 f"write points as fractions ({name}:0.05 is 5 points)"
                 for name, (value, relative) in self.by_name.items() if name in rates and not relative and value > 1]
        for name in self.by_name:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
                    f"; known here: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''}"
                notes.append(f"--llm-tolerance: no metric or kind is named {name!r}{hint}")
        return notes


def _tolerance_value(part: str, value: str) -> tuple[float, bool]:
    match = re.fullmatch(r"([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)(%?)", value)
    if not match:
        raise ConfigError(
            f"--llm-tolerance: {part!r} is not NAME:VALUE; write e.g. "
            "'similarity:0.02,latency_s:10%' (a bare value sets the default)"
        )
    number = float(match.group(1))
    if number < 0:
        raise ConfigError(
            f"--llm-tolerance: {part!r} is negative; a tolerance is how much worse a metric may get "
            "before it counts, 0 or more (the direction comes from the metric)"
        )
    return number / (100 if match.group(2) else 1), bool(match.group(2))


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
    # Sampled, unchanged, and unable to rule out a worsening that matters; settle_n samples a side would.
    inconclusive: bool = False
    settle_n: int | None = None
    p_worse: float = 1.0
    p_better: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and a report can have tens of thousands of rows.
        return {"test": self.test, "metric": self.metric, "verdict": self.verdict, "baseline": self.baseline,
                "current": self.current, "delta": self.delta, "why": self.why, "detectable": self.detectable,
                "inconclusive": self.inconclusive, "settle_n": self.settle_n, "values": self.values}


def _numbers(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the JSON report keeps of a side: enough to recompute the verdict."""
    if entry is None:
        return None
    return {"mean": entry["mean"], "n": entry["n"], "passed": entry.get("passed"), "std": entry.get("std"),
            "scale": scale(entry)}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def scale(entry: dict[str, Any]) -> str:
    """``binary`` (yes/no values, compared as a rate) or ``numeric`` (compared by the mean).

    Entries written before the field existed are binary when their mean is their pass rate.
    """
    value = entry.get("scale")
    if value in ("binary", "numeric"):
        return str(value)
    passed, n, mean = entry.get("passed"), entry["n"], entry["mean"]
    binary = passed is not None and n > 0 and 0 <= mean <= 1 and abs(mean - passed / n) < 1e-6
    return "binary" if binary else "numeric"


def _side(entry: dict[str, Any], binary: bool) -> stats.Side:
    return stats.Side(float(entry["mean"]), int(entry["n"]), float(entry.get("std") or 0.0), binary)


def _format_value(entry: dict[str, Any], binary: bool) -> str:
    """A side's value as the table shows it: a pass rate with its count, or the mean with its n."""
    if binary and entry["n"] > 1:
        k = round(entry["mean"] * entry["n"])
        return f"{entry['mean']:.0%} ({k}/{entry['n']})"
    return _fmt(entry["mean"]) + (f" (n={entry['n']})" if entry["n"] > 1 else "")


_FINGERPRINT_LABELS = {"model": "model changed", "prompt": "prompt changed", "params": "sampling parameters changed",
                       "embedding_model": "embedding model changed", "judge": "judge changed"}


def fingerprint_changes(base_fp: dict[str, Any] | None, cur_fp: dict[str, Any] | None) -> tuple[str, ...]:
    """What changed between two runs of a test, from its fingerprints ("model changed", ...); () if either is empty."""
    if not base_fp or not cur_fp or base_fp == cur_fp:
        return ()
    return tuple(label for key, label in _FINGERPRINT_LABELS.items() if base_fp.get(key) != cur_fp.get(key))


def why_moved(base_fp: dict[str, Any] | None, cur_fp: dict[str, Any] | None) -> str:
    """What changed between the runs, from the tests' fingerprints."""
    return ", ".join(fingerprint_changes(base_fp, cur_fp))


def noise_floor(kind: str, base: float, current: float) -> float:
    """The largest change that is still floating-point noise for this kind of metric."""
    return max(NOISE_FLOOR.get(kind, 0.0), _RELATIVE_NOISE * max(abs(base), abs(current)), 1e-12)


_DIRECTION = {True: "higher", False: "lower", None: None}


def compare(baseline: Tests | None, current: Tests, tolerances: Tolerances, *,
            vanished: Collection[str] = (), finished: Collection[str] | None = None) -> list[Row]:
    """Every metric of ``current`` against ``baseline``.

    ``vanished``: baseline tests that a complete collection no longer holds (their metrics are *gone*).
    ``finished``: tests that ran to the end and passed; a metric they no longer record is *gone*
    (``None``: every test in ``current``).
    """
    base_tests = baseline or {}
    rows: list[Row] = []
    for test, cur_test in current.items():
        rows += _test_rows(test, base_tests.get(test, {}), cur_test, tolerances,
                           finished=finished is None or test in finished)
    rows += _gone_test_rows(base_tests, current, vanished, finished)
    control_false_discoveries(rows)
    rows.sort(key=lambda r: (_RANK[r.verdict], r.test, r.metric))
    return rows


def _test_rows(test: str, base_test: dict[str, Any], cur_test: dict[str, Any], tolerances: Tolerances, *,
               finished: bool) -> list[Row]:
    """The rows of a test of this run: each metric it recorded, and, if it ``finished``, each it no longer records."""
    base_metrics = base_test.get("metrics", {})
    why = why_moved(base_test.get("fingerprint"), cur_test.get("fingerprint"))
    rows = []
    for metric, cur in cur_test["metrics"].items():
        base = base_metrics.get(metric)
        rows.append(_new(test, metric, cur) if base is None else
                    compare_metric(test, metric, base, cur, tolerances, why))
    if finished:
        rows += [_gone(test, metric, base) for metric, base in base_metrics.items()
                 if metric not in cur_test["metrics"]]
    return rows


def _gone_test_rows(base_tests: Tests, current: Tests, vanished: Collection[str],
                    finished: Collection[str] | None) -> list[Row]:
    """Every metric of the baseline tests that this run lost: vanished from the collection, or finished without
    recording anything."""
    # A test that passed without recording anything has lost its metrics too.
    gone_tests = set(vanished) | (set(finished) - set(current) if finished is not None else set())
    return [_gone(test, metric, base) for test in sorted(gone_tests) if test in base_tests and test not in current
            for metric, base in base_tests[test].get("metrics", {}).items()]


def _new(test: str, metric: str, cur: dict[str, Any]) -> Row:
    return Row(test, metric, "new", current=_format_value(cur, scale(cur) == "binary"),
               values={"current": _numbers(cur)})


def _gone(test: str, metric: str, base: dict[str, Any]) -> Row:
    return Row(test, metric, "gone", baseline=_format_value(base, scale(base) == "binary"),
               values={"baseline": _numbers(base)})


def compare_metric(test: str, metric: str, base: dict[str, Any], cur: dict[str, Any], tolerances: Tolerances,
                   why: str = "") -> Row:
    """One metric of one test against its baseline entry."""
    if base["n"] == 1 and cur["n"] == 1:
        return _compare_values(test, metric, base, cur, tolerances, why)
    return _compare_samples(test, metric, base, cur, tolerances, why)


def _compare_values(test: str, metric: str, base: dict[str, Any], cur: dict[str, Any], tolerances: Tolerances,
                    why: str) -> Row:
    """Deterministic values (the common case, kept fast): the change is the point itself."""
    kind = cur.get("kind", metric)
    higher = cur.get("higher_is_better")
    raw = cur["mean"] - base["mean"]
    d = -raw if higher is False else raw
    tolerance = _tolerance(tolerances, metric, kind, base["mean"], cur["mean"])
    if abs(d) <= tolerance:
        verdict = "unchanged"
    else:
        verdict = "changed" if higher is None else "regressed" if d < 0 else "improved"
    return Row(test, metric, verdict, _fmt(base["mean"]), _fmt(cur["mean"]), f"{raw:+.4g}",
               why if verdict != "unchanged" else "", values=_values(base, cur, tolerance, higher))


def _compare_samples(test: str, metric: str, base: dict[str, Any], cur: dict[str, Any], tolerances: Tolerances,
                     why: str) -> Row:
    """Samples on at least one side: a verdict only where the samples settle it (`stats.change`)."""
    kind = cur.get("kind", metric)
    higher = cur.get("higher_is_better")
    directed = higher is not None
    binary = scale(base) == "binary" and scale(cur) == "binary"
    b, c = _side(base, binary), _side(cur, binary)
    tolerance = _tolerance(tolerances, metric, kind, b.mean, c.mean)
    # Without a direction either way counts: each side gets half the error rate.
    alpha = stats.ONE_SIDED_ALPHA if directed else stats.ONE_SIDED_ALPHA / 2
    change = stats.change(b, c, higher, tolerance, alpha)
    verdict = stats.verdict(change, tolerance, directed)
    raw = c.mean - b.mean
    row = Row(test, metric, verdict, _format_value(base, binary), _format_value(cur, binary),
              f"{raw * 100:+.0f} pts" if binary else f"{raw:+.4g}", why if verdict != "unchanged" else "",
              values=_values(base, cur, tolerance, higher), p_worse=change.p_worse, p_better=change.p_better)
    row.values["change_interval"] = [change.lo, change.hi]
    practical = tolerance if tolerances.is_set(metric, kind) else _practical(tolerance, b)
    _detectable(row, b, c, alpha, practical)
    return row


def _tolerance(tolerances: Tolerances, metric: str, kind: str, base: float, current: float) -> float:
    """The change that still counts as unchanged: the tolerance set (or built in), never below the noise floor."""
    return max(tolerances.for_metric(metric, kind, base), noise_floor(kind, base, current))


def _values(base: dict[str, Any], cur: dict[str, Any], tolerance: float, higher: bool | None) -> dict[str, Any]:
    """What the JSON report keeps of a comparison: both sides, the tolerance applied and the direction."""
    return {"baseline": _numbers(base), "current": _numbers(cur), "tolerance": tolerance,
            "direction": _DIRECTION[higher]}


def _practical(tolerance: float, base: stats.Side) -> float:
    """The worsening that matters when no tolerance is set: 10 points of a pass rate, 10 % of a mean."""
    return max(tolerance, PRACTICAL_RATE if base.binary else PRACTICAL_RELATIVE * abs(base.mean))


def _detectable(row: Row, b: stats.Side, c: stats.Side, alpha: float, practical: float) -> None:
    """Fill in the smallest worsening the samples could have called a regression.

    A directed row found unchanged by samples that could not have caught a
    worsening of ``practical`` settled nothing: it is *inconclusive*, with the
    samples a side that would settle it.
    """
    mde = stats.min_detectable_effect(b, c, alpha)
    if mde is None:
        return
    row.detectable = f"{mde * 100:.0f} pts" if b.binary else _fmt(mde)
    directed = row.values["direction"] is not None
    if directed and row.verdict == "unchanged" and practical > 0 and mde > practical:
        row.inconclusive = True
        row.settle_n = stats.samples_to_detect(b, c, practical, alpha)
        if row.settle_n:
            row.detectable += f" (n={row.settle_n} settles)"


def control_false_discoveries(rows: list[Row]) -> None:
    """With many sampled metrics some move by chance: hold the false discovery rate at 5 % (Benjamini-Hochberg).

    The family is every sampled comparison, not only the alarming ones. A
    regression that does not survive is *unstable*; an improvement or a
    change that does not survive is *unchanged*.
    """
    sampled = [r for r in rows if "change_interval" in r.values]
    families: tuple[tuple[str, str, Callable[[Row], float]], ...] = (
                ("regressed", "unstable", lambda r: r.p_worse if r.values["direction"] else 1.0),
                ("improved", "unchanged", lambda r: r.p_better if r.values["direction"] else 1.0),
                ("changed", "unchanged", lambda r: 1.0 if r.values["direction"] else 2 * min(r.p_worse, r.p_better)))
    for verdict, demoted, p_value in families:
        if not any(r.verdict == verdict for r in sampled):
            continue
        keep = stats.benjamini_hochberg([p_value(r) for r in sampled])
        for row, rejected in zip(sampled, keep):
            if row.verdict == verdict and not rejected:
                row.verdict = demoted
                if demoted == "unchanged":
                    row.why = ""


def totals(rows: Sequence[Row]) -> dict[str, int]:
    counts = {v: 0 for v in ORDER}
    for row in rows:
        counts[row.verdict] += 1
    return counts


def inconclusive_line(rows: Sequence[Row]) -> str | None:
    """The summary line for sampled comparisons that could not settle anything."""
    open_rows = [r for r in rows if r.inconclusive]
    if not open_rows:
        return None
    needed = [r.settle_n for r in open_rows if r.settle_n]
    settle = f"; about {max(needed)} samples a side would settle {'it' if len(open_rows) == 1 else 'them'}" \
        if needed else ""
    noun = "metric is" if len(open_rows) == 1 else "metrics are"
    return (f"{len(open_rows)} sampled {noun} inconclusive: too few samples to rule out a worsening that matters "
            f"(see detectable){settle}")

