"""The model matrix's comparison: each model against the first one named, pooled over the tests both ran."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmmetrics.baseline import aggregate
from pytest_llmmetrics.baseline.compare import Tolerances
from pytest_llmmetrics.baseline.store import Tests

# The pooled verdicts as a comparison of two models says them.
VERDICTS = {"improved": "better", "regressed": "worse", "unchanged": "no difference",
            "unstable": "no difference", "changed": "different"}


@dataclass(frozen=True)
class ModelRow:
    """One model against the first one named, for one metric kind in one track, pooled over shared tests."""

    model: str
    against: str
    metric: str
    track: str
    tests: int
    value: float
    reference_value: float
    delta: float
    low: float
    high: float
    verdict: str  # better, worse, no difference; "different" for a metric without a direction
    direction: str | None
    binary: bool

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "against": self.against, "metric": self.metric, "track": self.track,
                "tests": self.tests, "value": self.value, "reference_value": self.reference_value,
                "delta": self.delta, "low": self.low, "high": self.high, "verdict": self.verdict,
                "direction": self.direction}


def compare_models(tests: Tests, runs: Mapping[str, tuple[str, str]], order: Sequence[str],
                   tolerances: Tolerances | None = None) -> list[ModelRow]:
    """Each model against ``order[0]``: for every metric kind and track, pooled over the tests both ran.

    ``tests``: this run's metrics by test id; ``runs``: test id -> (model, the
    test id without the model). The comparison is the pooled one of the delta
    report (`aggregate.pooled`) with the first model in the baseline's place:
    paired by test, tests as clusters, one-sided bounds at `stats.POOLED_ALPHA`,
    the false discovery rate held over each model's rows. Both models ran on
    the same machine in the same run, so latency is judged by its interval
    too (against a baseline, a run on a slower machine moves every test
    alike, hence the 50 % tolerance there). A model needs two tests or more
    with a metric that both ran.
    """
    by_model: dict[str, Tests] = {}
    for test, metrics in tests.items():
        found = runs.get(test)
        if found is not None:
            by_model.setdefault(found[0], {})[found[1]] = metrics
    if not order or order[0] not in by_model:
        return []
    first = order[0]
    rows = []
    for model in order[1:]:
        if model not in by_model:
            continue
        for a in aggregate.pooled(by_model[first], by_model[model], tolerances, same_run=True):
            if a.scope != "track":
                continue
            rows.append(ModelRow(model, first, a.metric, a.name, a.tests, a.current, a.baseline, a.delta, a.low,
                                 a.high, VERDICTS[a.verdict], a.direction, a.binary))
    return rows


def not_compared(tests: Tests, runs: Mapping[str, tuple[str, str]], order: Sequence[str],
                 rows: Sequence[ModelRow]) -> dict[str, list[str]]:
    """For each model after the first, the metrics either of the two recorded that have no comparison row:
    fewer than two tests recorded them under both models (one model failed before recording, skipped, or
    records a metric the other does not). Said in the report, so a missing row is never silent."""
    names: dict[str, set[str]] = {}
    for test, metrics in tests.items():
        found = runs.get(test)
        if found is not None:
            names.setdefault(found[0], set()).update(name.split("[", 1)[0] for name in metrics.get("metrics", {}))
    if not order:
        return {}
    first = names.get(order[0], set())
    gaps = {}
    for model in order[1:]:
        missing = (first | names.get(model, set())) - {r.metric for r in rows if r.model == model}
        if missing:
            gaps[model] = sorted(missing)
    return gaps
