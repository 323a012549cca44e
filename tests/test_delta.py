"""Unit tests of the delta comparison: tolerances, verdicts, why a metric moved, false-discovery control."""

from __future__ import annotations

import pytest

from pytest_llmmetrics import ConfigError
from pytest_llmmetrics.delta import Tolerances, compare, totals, why_moved


def entry(mean, n=1, passed=None, std=0.0, higher=True, kind=None):
    return {"higher_is_better": higher, "kind": kind or "m", "mean": mean, "n": n, "passed": passed, "std": std,
            "threshold": None}


def test_tolerance_syntax_and_lookup():
    tol = Tolerances.parse("0.01, similarity:0.02 ,latency_s:10%")
    assert tol.for_metric("word_count", "word_count", 40) == 0.01
    assert tol.for_metric("similarity[snapshot]", "similarity", 0.9) == 0.02
    assert tol.for_metric("latency_s", "latency_s", 2.0) == pytest.approx(0.2)
    assert Tolerances.parse(None).for_metric("latency_s", "latency_s", 2.0) == 1.0  # built in: 50 %
    with pytest.raises(ConfigError, match="is not NAME:VALUE"):
        Tolerances.parse("similarity:lots")


def test_verdicts_for_single_values_follow_direction_and_tolerance():
    base = {"t": {"fingerprint": {"prompt": "a"}, "metrics": {
        "latency_s": entry(1.0, higher=False, kind="latency_s"), "word_count": entry(10, higher=False),
        "score": entry(0.5), "kept": entry(1.0)}}}
    cur = {"t": {"fingerprint": {"prompt": "b"}, "metrics": {
        "latency_s": entry(1.4, higher=False, kind="latency_s"), "word_count": entry(12, higher=False),
        "score": entry(0.7), "new_one": entry(3.0)}}}
    rows = compare(base, cur, Tolerances(), full_run=True)
    verdicts = {r.metric: r.verdict for r in rows}
    assert verdicts == {"latency_s": "unchanged", "word_count": "regressed", "score": "improved",
                        "new_one": "new", "kept": "gone"}
    assert [r.verdict for r in rows] == ["regressed", "improved", "new", "gone", "unchanged"]
    assert rows[0].why == "prompt changed" and rows[0].delta == "+2"
    assert totals(rows)["regressed"] == 1
    assert "gone" not in {r.verdict for r in compare(base, cur, Tolerances(), full_run=False)}


def test_why_moved():
    assert why_moved({"model": "a", "prompt": "x"}, {"model": "b", "prompt": "y"}) == "model changed, prompt changed"
    assert why_moved({"embedding_model": "a"}, {"embedding_model": "b"}) == "embedding model changed"
    assert why_moved({}, {"model": "b"}) == ""


def test_a_borderline_regression_among_many_sampled_metrics_is_held_by_benjamini_hochberg():
    # Alone, a drop from 80 % to 68 % over 75 samples is called a regression; among twenty
    # sampled metrics that did not move, it could be the one in twenty that looks bad by chance.
    base = {f"t{i}": {"metrics": {"rate": entry(0.8, 75, 60)}} for i in range(20)}
    cur = {f"t{i}": {"metrics": {"rate": entry(0.8, 75, 60)}} for i in range(19)}
    cur["t19"] = {"metrics": {"rate": entry(0.68, 75, 51)}}
    single = compare({"t": base["t19"]}, {"t": cur["t19"]}, Tolerances(), full_run=True)[0]
    assert single.verdict == "regressed"
    assert single.detectable.endswith("pts") and single.current == "68% (51/75)"
    rows = compare(base, cur, Tolerances(), full_run=True)
    assert [(r.test, r.verdict) for r in rows if r.verdict != "unchanged"] == [("t19", "unstable")]
    cur["t19"] = {"metrics": {"rate": entry(0.4, 75, 30)}}  # a clear drop survives the correction
    assert compare(base, cur, Tolerances(), full_run=True)[0].verdict == "regressed"
