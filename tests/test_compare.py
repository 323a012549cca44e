"""Unit tests of the delta comparison: tolerances, verdicts, noise floors, why a metric moved, false discoveries.

The false-alarm figures of the README ("Quiet when nothing changed") come from the seeded simulations here.
"""

from __future__ import annotations

import math
import random

import pytest

from pytest_llmmetrics import ConfigError
from pytest_llmmetrics.baseline.compare import (
    Tolerances,
    compare,
    inconclusive_line,
    totals,
    why_moved,
)


def entry(mean, n=1, passed=None, std=0.0, higher=True, kind=None, scale=None):
    data = {"higher_is_better": higher, "kind": kind or "m", "mean": mean, "n": n, "passed": passed, "std": std,
            "threshold": None}
    if scale:
        data["scale"] = scale
    return data


def rate(k, n, kind="contains"):
    return entry(round(k / n, 6), n, k, round(math.sqrt(k * (n - k) / (n * (n - 1))), 6) if n > 1 else 0.0,
                 kind=kind, scale="binary")


def values(xs, higher=False, kind="word_count"):
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return entry(m, n, n, sd, higher=higher, kind=kind, scale="numeric")


def one(base, cur, tolerances=Tolerances()):
    return compare({"t": {"metrics": {"m": base}}}, {"t": {"metrics": {"m": cur}}}, tolerances)[0]


def test_tolerance_syntax_and_lookup():
    tol = Tolerances.parse("0.01, similarity:0.02 ,latency_s:10%")
    assert tol.for_metric("word_count", "word_count", 40) == 0.01
    assert tol.for_metric("similarity[snapshot]", "similarity", 0.9) == 0.02
    assert tol.for_metric("latency_s", "latency_s", 2.0) == pytest.approx(0.2)
    assert Tolerances.parse(None).for_metric("latency_s", "latency_s", 2.0) == 1.0  # built in: 50 %
    assert Tolerances.parse(".5").default == (0.5, False)


@pytest.mark.parametrize(("spec", "message"), [
    ("similarity:lots", "is not NAME:VALUE"),
    ("-1", "'-1' is negative"),
    ("word_count:-5%", "is negative"),
    ("0.01,0.02", "two default values"),
    ("similarity:0.01,similarity:0.02", "'similarity' is given twice"),
    (":5", "has no name before the ':'"),
])
def test_bad_tolerances_say_what_is_wrong(spec, message):
    with pytest.raises(ConfigError, match=message):
        Tolerances.parse(spec)


def test_a_pass_rate_tolerance_above_one_is_a_warning():
    notes = Tolerances.parse("pass_rate:50,contains:5,word_count:50").unknown_names(
        {"contains[Paris]", "contains", "word_count"}, {"contains[Paris]", "contains"})
    assert notes == [
        "--llm-tolerance: pass_rate:50 is more than 1, and a pass rate moves between 0 and 1: write points as "
        "fractions (pass_rate:0.05 is 5 points)",
        "--llm-tolerance: contains:5 is more than 1, and a pass rate moves between 0 and 1: write points as "
        "fractions (contains:0.05 is 5 points)"]


def test_unknown_tolerance_names_get_the_closest_known_ones():
    notes = Tolerances.parse("simlarity:0.02,word_count:1,zzz:1").unknown_names({"similarity[snapshot]", "word_count"})
    assert notes[0].startswith("--llm-tolerance: no metric or kind is named 'simlarity'; did you mean 'similarity'")
    assert len(notes) == 2 and "'zzz'" in notes[1]


def test_verdicts_for_single_values_follow_direction_and_tolerance():
    base = {"t": {"fingerprint": {"prompt": "a"}, "metrics": {
        "latency_s": entry(1.0, higher=False, kind="latency_s"), "word_count": entry(10, higher=False),
        "score": entry(0.5), "plain": entry(3.0, higher=None), "kept": entry(1.0)}}}
    cur = {"t": {"fingerprint": {"prompt": "b"}, "metrics": {
        "latency_s": entry(1.4, higher=False, kind="latency_s"), "word_count": entry(12, higher=False),
        "score": entry(0.7), "plain": entry(4.0, higher=None), "new_one": entry(3.0)}}}
    rows = compare(base, cur, Tolerances())
    verdicts = {r.metric: r.verdict for r in rows}
    assert verdicts == {"latency_s": "unchanged", "word_count": "regressed", "score": "improved",
                        "plain": "changed", "new_one": "new", "kept": "gone"}
    assert [r.verdict for r in rows] == ["regressed", "changed", "improved", "new", "gone", "unchanged"]
    assert rows[0].why == "prompt changed" and rows[0].delta == "+2"
    assert totals(rows)["regressed"] == 1
    # A test that did not finish (failed, skipped) does not lose metrics it did not get to record.
    assert "gone" not in {r.verdict for r in compare(base, cur, Tolerances(), finished=set())}
    vanished = compare({**base, "old": base["t"]}, cur, Tolerances(), vanished={"old"}, finished=set())
    assert {r.test for r in vanished if r.verdict == "gone"} == {"old"}


def test_why_moved():
    assert why_moved({"model": "a", "prompt": "x"}, {"model": "b", "prompt": "y"}) == "model changed, prompt changed"
    assert why_moved({"embedding_model": "a"}, {"embedding_model": "b"}) == "embedding model changed"
    assert why_moved({}, {"model": "b"}) == ""


def test_sampled_numeric_metrics_are_compared_by_their_values_not_their_pass_counts():
    # All five samples pass word_count(max=60) both times, but the mean rose from 13 to 43.
    row = one(values([12, 13, 13, 14, 13]), values([41, 43, 44, 42, 45]))
    assert row.verdict == "regressed" and row.baseline == "13 (n=5)" and row.current == "43 (n=5)"
    # Latency from 1 s to 4 s over samples, beyond the built-in 50 %.
    row = one(values([1.0, 1.1, 0.9], kind="latency_s"), values([4.0, 4.2, 3.9], kind="latency_s"))
    assert row.verdict == "regressed"
    # Cost up 36 % against a 10 % tolerance.
    base, cur = values([1.00e-4, 1.02e-4, 0.98e-4], kind="cost"), values([1.36e-4, 1.38e-4, 1.34e-4], kind="cost")
    assert one(base, cur, Tolerances.parse("cost:10%")).verdict == "regressed"
    assert one(base, cur, Tolerances.parse("cost:50%")).verdict == "unchanged"


def test_yes_no_checks_are_compared_by_pass_rate():
    row = one(rate(72, 75), rate(45, 75))
    assert row.verdict == "regressed" and row.current == "60% (45/75)" and row.delta == "-36 pts"
    assert row.detectable.endswith("pts")


def test_old_baselines_without_a_scale_are_read_by_their_numbers():
    old_rate = entry(0.893333, 75, 67, 0.31)
    old_count = entry(13.0, 5, 5, 0.7, higher=False, kind="word_count")
    assert one(old_rate, rate(45, 75)).current == "60% (45/75)"
    assert one(old_count, values([41, 43, 44, 42, 45])).verdict == "regressed"


def test_floating_point_noise_never_moves_a_verdict_but_a_real_drop_shows():
    sim = dict(kind="similarity")
    assert one(entry(0.912345, **sim), entry(0.912345 - 1.19e-7, **sim)).verdict == "unchanged"
    assert one(entry(0.912345, **sim), entry(0.912345 + 1.19e-7, **sim)).verdict == "unchanged"
    assert one(entry(0.91, **sim), entry(0.90, **sim)).verdict == "regressed"
    # Sampled similarities with almost no spread: 1e-7 is noise there too.
    assert one(entry(0.91, 5, None, 1e-8, **sim), entry(0.9100001, 5, None, 1e-8, **sim)).verdict == "unchanged"
    assert one(entry(40.0, higher=False), entry(40.00000001, higher=False)).verdict == "unchanged"


def test_a_borderline_regression_among_many_sampled_metrics_is_held_by_benjamini_hochberg():
    # Alone, a drop from 80 % to 68 % over 75 samples is called a regression; among twenty
    # sampled metrics that did not move, it could be the one in twenty that looks bad by chance.
    base = {f"t{i}": {"metrics": {"rate": rate(60, 75)}} for i in range(20)}
    cur = {f"t{i}": {"metrics": {"rate": rate(60, 75)}} for i in range(19)}
    cur["t19"] = {"metrics": {"rate": rate(50, 75)}}
    single = compare({"t": base["t19"]}, {"t": cur["t19"]}, Tolerances())[0]
    assert single.verdict == "regressed"
    rows = compare(base, cur, Tolerances())
    assert [(r.test, r.verdict) for r in rows if r.verdict != "unchanged"] == [("t19", "unstable")]
    cur["t19"] = {"metrics": {"rate": rate(30, 75)}}  # a clear drop survives the correction
    assert compare(base, cur, Tolerances())[0].verdict == "regressed"


def test_inconclusive_comparisons_are_counted_on_their_own_line():
    rows = compare({"t": {"metrics": {"m": rate(8, 10)}}}, {"t": {"metrics": {"m": rate(7, 10)}}}, Tolerances())
    assert rows[0].verdict == "unchanged" and rows[0].inconclusive and rows[0].settle_n > 100
    line = inconclusive_line(rows)
    assert line.startswith("1 sampled metric is inconclusive") and f"about {rows[0].settle_n} samples" in line
    settled = compare({"t": {"metrics": {"m": rate(600, 750)}}}, {"t": {"metrics": {"m": rate(598, 750)}}},
                      Tolerances())
    assert not settled[0].inconclusive and inconclusive_line(settled) is None


# --- Quiet when nothing changed: the scenario, seeded -----------------------------------------------------

def draw_suite(rng, probabilities, n):
    return {f"t{i}": {"metrics": {"check": rate(sum(rng.random() < p for _ in range(n)), n)}}
            for i, p in enumerate(probabilities)}


@pytest.mark.parametrize("n", [5, 10, 20])
def test_forty_sampled_tests_with_no_change_are_quiet(n):
    """40 tests, pass probabilities 0.5 ... 0.9, one baseline run, five fresh runs; 200 repetitions."""
    rng = random.Random(n)
    probabilities = [0.5 + 0.4 * i / 39 for i in range(40)]
    counts = {"rows": 0, "regressed": 0, "loud": 0}
    for _ in range(200):
        baseline = draw_suite(rng, probabilities, n)
        for _ in range(5):
            rows = compare(baseline, draw_suite(rng, probabilities, n), Tolerances())
            counts["rows"] += len(rows)
            counts["regressed"] += sum(r.verdict == "regressed" for r in rows)
            counts["loud"] += sum(r.verdict != "unchanged" for r in rows)
    assert counts["regressed"] / counts["rows"] <= 0.05, counts
    assert counts["loud"] / counts["rows"] <= 0.10, counts


@pytest.mark.parametrize("p", [0.5, 0.6, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("n", [5, 10, 20])
def test_a_single_sampled_test_with_no_change_is_quiet_at_every_pass_probability(p, n):
    rng = random.Random(int(p * 100) + n)
    verdicts = {"regressed": 0, "unchanged": 0}
    for _ in range(2000):
        row = compare(draw_suite(rng, [p], n), draw_suite(rng, [p], n), Tolerances())[0]
        verdicts[row.verdict] = verdicts.get(row.verdict, 0) + 1
    assert verdicts["regressed"] / 2000 <= 0.05, verdicts
    assert 1 - verdicts["unchanged"] / 2000 <= 0.10, verdicts


def test_a_real_20_point_drop_in_each_of_forty_tests_survives_the_correction():
    rng = random.Random(3)
    probabilities = [0.9] * 40
    found = 0
    for _ in range(50):
        rows = compare(draw_suite(rng, probabilities, 75), draw_suite(rng, [0.7] * 40, 75), Tolerances())
        found += sum(r.verdict == "regressed" for r in rows)
    assert found / (50 * 40) >= 0.9
