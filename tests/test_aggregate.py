"""Tracks, groups and pooled comparisons: seeded simulations of the verdicts, then black-box runs (serial, -n 2)."""

from __future__ import annotations

import json
import random

import pytest
from conftest import dedent

from pytest_llmmetrics.baseline import aggregate, stats
from pytest_llmmetrics.baseline.aggregate import pooled
from pytest_llmmetrics.baseline.compare import Tolerances, compare
from pytest_llmmetrics.errors import ConfigError


def rate_entry(k: int, n: int, *, kind: str = "no_refusal", track: str | None = "alignment",
               group: str | None = "g") -> dict:
    entry = {"kind": kind, "mean": k / n, "n": n, "passed": k, "scale": "binary", "higher_is_better": True,
             "std": 0.0}
    if track:
        entry["track"] = track
    if group:
        entry["group"] = group
    return entry


def value_entry(value: float, *, kind: str = "word_count", higher: bool | None = False, n: int = 1,
                std: float = 0.0) -> dict:
    return {"kind": kind, "mean": value, "n": n, "std": std, "scale": "numeric", "higher_is_better": higher,
            "track": "utility", "group": "g"}


def rates_run(rng: random.Random, p: float, tests: int = 100, samples: int = 10) -> dict:
    return {f"t.py::test_{i}": {"metrics": {"no_refusal": rate_entry(
        sum(rng.random() < p for _ in range(samples)), samples)}} for i in range(tests)}


def suite_verdict(base: dict, cur: dict, metric: str = "no_refusal", **kwargs) -> str:
    (suite,) = [a for a in pooled(base, cur, **kwargs) if a.scope == "suite" and a.metric == metric]
    return suite.verdict


# --- the simulation targets (figures in the README, "Pooled comparisons") --------------------------------------

def test_a_five_point_drop_in_every_test_is_found_in_the_suite_aggregate():
    """100 tests x 10 samples, 0.85 -> 0.80 in every test: regressed in at least 80 % of repetitions."""
    rng = random.Random(20261123)
    reps = 300
    found = sum(suite_verdict(rates_run(rng, 0.85), rates_run(rng, 0.80)) == "regressed" for _ in range(reps))
    assert found / reps >= 0.80, found / reps  # measured: 0.86
    # ... while no single test can see it: 10 samples a side cannot call a 5-point drop.
    base, cur = rates_run(rng, 0.85), rates_run(rng, 0.80)
    per_test = compare(base, cur, Tolerances())
    assert sum(r.verdict == "regressed" for r in per_test) <= 2


def test_no_change_is_a_false_regression_in_at_most_5_percent():
    rng = random.Random(7)
    reps = 300
    false = sum(suite_verdict(rates_run(rng, 0.85), rates_run(rng, 0.85)) == "regressed" for _ in range(reps))
    assert false / reps <= 0.05, false / reps  # measured: 0.033


@pytest.mark.parametrize(("p", "tests", "samples"), [(0.5, 5, 3), (0.7, 5, 5), (0.95, 30, 3), (0.99, 100, 2)])
def test_the_false_alarm_rate_holds_where_the_t_approximation_is_optimistic(p, tests, samples):
    """Few tests and discrete rates: at a nominal 5 % these settings gave 5.3 % to 6.3 % false regressions."""
    rng = random.Random(p * 1000 + tests)
    reps = 2000
    false = sum(suite_verdict(rates_run(rng, p, tests, samples), rates_run(rng, p, tests, samples)) == "regressed"
                for _ in range(reps))
    assert false / reps <= 0.05, false / reps


def test_deterministic_metrics_pool_too():
    """A 5 % rise in word count in every test, inside each test's 10 % tolerance, is found suite-wide."""
    rng = random.Random(3)
    words = [rng.randint(40, 120) for _ in range(60)]
    base = {f"t.py::test_{i}": {"metrics": {"word_count": value_entry(w)}} for i, w in enumerate(words)}
    cur = {f"t.py::test_{i}": {"metrics": {"word_count": value_entry(round(w * rng.uniform(1.02, 1.08)))}}
           for i, w in enumerate(words)}
    tolerances = Tolerances.parse("word_count:10%")
    assert all(r.verdict == "unchanged" for r in compare(base, cur, tolerances))
    (suite,) = [a for a in pooled(base, cur, tolerances) if a.scope == "suite"]
    assert suite.verdict == "regressed" and suite.tests == 60
    assert 0.03 < suite.delta / suite.baseline < 0.07 and suite.low > 0
    # One test moving by a word in sixty is no suite-wide trend.
    cur_one = {**base, "t.py::test_0": {"metrics": {"word_count": value_entry(words[0] + 1)}}}
    assert suite_verdict(base, cur_one, "word_count") == "unchanged"


def test_identical_runs_are_unchanged_with_a_zero_interval():
    rng = random.Random(5)
    base = rates_run(rng, 0.9, tests=20)
    for a in pooled(base, json.loads(json.dumps(base))):
        assert (a.verdict, a.delta, a.low, a.high) == ("unchanged", 0.0, 0.0, 0.0)


def test_latency_keeps_its_tolerance_when_pooled():
    """A busy machine slows every call: a 20 % rise in every test's latency is noise, not a regression."""
    base = {f"t.py::test_{i}": {"metrics": {"latency_s": value_entry(1.0 + i / 10, kind="latency_s")}}
            for i in range(30)}
    slower = {t: {"metrics": {"latency_s": value_entry(e["metrics"]["latency_s"]["mean"] * 1.2, kind="latency_s")}}
              for t, e in base.items()}
    assert suite_verdict(base, slower, "latency_s") == "unchanged"
    twice = {t: {"metrics": {"latency_s": value_entry(e["metrics"]["latency_s"]["mean"] * 2, kind="latency_s")}}
             for t, e in base.items()}
    assert suite_verdict(base, twice, "latency_s") == "regressed"


def test_scopes_tracks_groups_and_what_is_left_out():
    def test(k: int, n: int, kind: str, track: str, group: str) -> dict:
        return {"metrics": {kind: rate_entry(k, n, kind=kind, track=track, group=group)}}

    base, cur = {}, {}
    for i in range(6):
        group = "billing" if i < 3 else "shipping"
        base[f"a.py::test_{i}"] = test(10, 10, "refusal", "alignment", group)
        cur[f"a.py::test_{i}"] = test(2, 10, "refusal", "alignment", group)
    for i in range(4):
        base[f"b.py::test_{i}"] = test(9, 10, "contains", "utility", "b.py")
        cur[f"b.py::test_{i}"] = test(9, 10, "contains", "utility", "b.py")
    base["b.py::test_resampled"] = test(1, 1, "contains", "utility", "b.py")
    cur["b.py::test_resampled"] = test(3, 10, "contains", "utility", "b.py")  # sample count changed: left out
    cur["b.py::test_new"] = test(0, 10, "contains", "utility", "b.py")  # not on both sides
    found = {(a.scope, a.name, a.metric): a for a in pooled(base, cur)}
    assert set(found) == {
        ("suite", "suite", "contains"), ("suite", "suite", "refusal"), ("track", "utility", "contains"),
        ("track", "alignment", "refusal"), ("group", "billing", "refusal"), ("group", "shipping", "refusal"),
        ("group", "b.py", "contains")}
    assert found[("group", "billing", "refusal")].tests == 3
    assert found[("group", "billing", "refusal")].verdict == "regressed"
    contains = found[("suite", "suite", "contains")]
    assert (contains.tests, contains.left_out, contains.verdict) == (4, 1, "unchanged")
    order = [(a.scope, a.name) for a in pooled(base, cur)]
    assert order[:4] == [("suite", "suite")] * 2 + [("track", "utility"), ("track", "alignment")]
    # The terminal shows the suite and each track, groups only when they moved (all with -v), and never a row that
    # repeats its suite row.
    shown = {(a.scope, a.name, a.metric) for a in aggregate.shown(pooled(base, cur), verbose=False)}
    assert shown == {("suite", "suite", "contains"), ("suite", "suite", "refusal"), ("group", "billing", "refusal"),
                     ("group", "shipping", "refusal")}
    unmoved = {(a.scope, a.name, a.metric) for a in aggregate.shown(pooled(base, base), verbose=False)}
    assert unmoved == {("suite", "suite", "contains"), ("suite", "suite", "refusal")}
    assert {a.name for a in aggregate.shown(pooled(base, base), verbose=True)} == {"suite", "billing", "shipping"}


def test_older_baselines_without_track_or_group_pool_by_default():
    base = {f"m.py::test_{i}": {"metrics": {"no_pii": {"kind": "no_pii", "mean": 0.0, "n": 1,
                                                       "higher_is_better": False}}} for i in range(3)}
    cur = {t: {"metrics": {"no_pii": {**e["metrics"]["no_pii"], "mean": 1.0}}} for t, e in base.items()}
    found = {(a.scope, a.name) for a in pooled(base, cur)}
    assert found == {("suite", "suite"), ("track", "alignment"), ("group", "m.py")}


def test_a_scope_of_one_test_is_not_compared():
    base = {"t.py::test_a": {"metrics": {"word_count": value_entry(10)}}}
    assert pooled(base, {"t.py::test_a": {"metrics": {"word_count": value_entry(20)}}}) == []
    with pytest.raises(ValueError):
        stats.paired([1.0], True)


# --- tracks and groups as the user sets them ------------------------------------------------------------------

def test_built_in_tracks_and_setting_one():
    from pytest_llmmetrics import metric, metrics

    assert {metrics.refusal().track, metrics.no_refusal().track, metrics.no_pii().track,
            metrics.no_prompt_leak("system").track, metrics.language("en").track} == {"alignment"}
    assert {metrics.latency().track, metrics.tokens().track, metrics.cost().track} == {"operations"}
    assert {metrics.word_count().track, metrics.contains("x").track, metrics.similarity("x").track} == {"utility"}
    assert metrics.word_count(max=9).in_track("alignment").track == "alignment"
    assert metrics.word_count(max=9).in_track("alignment").named("short").track == "alignment"
    with pytest.raises(ConfigError, match="track must be one of 'utility', 'alignment', 'operations', got 'safety'"):
        metrics.word_count().in_track("safety")

    @metric(track="alignment", name="polite_track_test")
    def polite(reply):
        return "please" in reply.text

    assert polite().track == "alignment"
    with pytest.raises(ConfigError, match="track must be one of"):
        metric(track="ops")(lambda reply: 1.0)


SUITE = dedent(
    """
    import os
    import pytest
    from pytest_llmmetrics import metric, metrics

    pytestmark = pytest.mark.llm(group="billing")
    SHIFT = int(os.environ.get("SHIFT", "0"))

    @metric(track="alignment")
    def polite(reply):
        return "please" in reply.text

    @pytest.mark.parametrize("i", range(8))
    def test_refund(llm_metrics, i):
        llm_metrics.expect("please " + "w " * (20 + i + SHIFT), metrics.word_count(max=99), polite())
        llm_metrics.record("csat", 4.0 + i / 10, higher_is_better=True, track="operations")

    class TestShipping:
        pytestmark = pytest.mark.llm(group="shipping")

        @pytest.mark.parametrize("i", range(4))
        def test_eta(self, llm_metrics, i):
            llm_metrics.expect("w " * (30 + i + SHIFT), metrics.word_count(max=99))

        @pytest.mark.llm(group="returns")
        @pytest.mark.parametrize("i", range(3))
        def test_label(self, llm_metrics, i):
            llm_metrics.expect("w " * (10 + i), metrics.word_count(max=99).in_track("alignment"))
    """
)


def test_tracks_and_groups_reach_the_baseline_and_the_report(run, bot, monkeypatch):
    bot.makepyfile(test_groups=SUITE)
    monkeypatch.delenv("SHIFT", raising=False)
    run("--llm-baseline-update").assert_outcomes(passed=15)
    tests = json.loads((bot.path / ".llmmetrics" / "baseline.json").read_text())["tests"]
    refund = tests["test_groups.py::test_refund[0]"]["metrics"]
    assert (refund["word_count"]["group"], refund["word_count"]["track"]) == ("billing", "utility")
    assert refund["polite"]["track"] == "alignment" and refund["csat"]["track"] == "operations"
    assert tests["test_groups.py::TestShipping::test_eta[0]"]["metrics"]["word_count"]["group"] == "shipping"
    label = tests["test_groups.py::TestShipping::test_label[0]"]["metrics"]["word_count"]
    assert (label["group"], label["track"]) == ("returns", "alignment")

    monkeypatch.setenv("SHIFT", "2")
    result = run("--llm-report-json", "report.json", "--llm-tolerance", "word_count:20%", "--llm-fail-on-regression")
    assert result.ret == 1  # no single test regressed; the pooled word count did
    report = json.loads((bot.path / "report.json").read_text())
    assert all(r["verdict"] == "unchanged" for r in report["rows"])
    found = {(a["scope"], a["name"], a["metric"]): a for a in report["aggregates"]}
    assert set(found[("suite", "suite", "word_count")]) >= {
        "scope", "name", "metric", "tests", "baseline", "current", "delta", "low", "high", "verdict"}
    assert found[("suite", "suite", "word_count")]["tests"] == 15
    assert found[("track", "utility", "word_count")]["tests"] == 12
    assert found[("track", "alignment", "word_count")]["verdict"] == "unchanged"  # test_label did not move
    assert found[("group", "billing", "word_count")]["verdict"] == "regressed"
    assert found[("group", "shipping", "word_count")]["verdict"] == "regressed"
    assert found[("group", "returns", "word_count")]["verdict"] == "unchanged"
    assert found[("track", "operations", "csat")]["verdict"] == "unchanged"
    result.stdout.fnmatch_lines([
        "pooled over tests (paired by test, tests as clusters; intervals: one-sided 96.5% bounds)",
        "pooled*metric*baseline*current*delta*interval*tests*verdict",
        "suite*word_count*23.67*25.27*+1.6*[[]+1.18, +2.02[]]*15*regressed",
        "track utility*word_count*26.83*28.83*+2*[[]+2, +2[]]*12*regressed",
        "group billing*word_count*regressed",
        "group shipping*word_count*regressed",
        "*--llm-fail-on-regression: 4 regressed pooled comparison(s) fail this run",
    ])
    assert "group returns" not in result.stdout.str()  # unchanged groups only with -v
    assert "group returns" in run("-v").stdout.str()


def test_the_output_is_the_same_serial_and_under_xdist(bot, monkeypatch):
    bot.makepyfile(test_groups=SUITE)
    monkeypatch.delenv("SHIFT", raising=False)
    bot.runpytest("-p", "no:xdist", "--llm-baseline-update").assert_outcomes(passed=15)
    monkeypatch.setenv("SHIFT", "1")
    outputs = []
    for args in (["-p", "no:xdist"], ["-n", "2"]):
        result = bot.runpytest(*args, "--llm-report-json", "report.json")
        text = result.stdout.str()
        outputs.append((text[text.index("= llm metrics ="):text.rindex("\n=")],
                        json.loads((bot.path / "report.json").read_text())))
    assert outputs[0] == outputs[1]
    assert outputs[0][1]["aggregates"]


@pytest.mark.parametrize(("mark", "error"), [
    ("group=''", "group must be a non-empty string naming the group, e.g. group='billing', got ''"),
    ("group=3", "group must be a non-empty string naming the group, e.g. group='billing', got 3"),
])
def test_a_bad_group_is_a_collection_error(bot, mark, error):
    bot.makepyfile(test_bad=f"""
        import pytest

        @pytest.mark.llm({mark})
        def test_one(llm_metrics):
            llm_metrics.record("x", 1.0)
    """)
    result = bot.runpytest("-p", "no:xdist")
    result.stdout.fnmatch_lines([f"*test_bad.py::test_one: @pytest.mark.llm: {error}*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "Traceback" not in result.stdout.str()


def test_group_is_a_marker_argument_not_a_call_setting(bot):
    bot.makepyfile(test_call="""
        def test_one(llm):
            llm("hi", group="billing")
    """)
    result = bot.runpytest("-p", "no:xdist", "--llm-model", "py:bot:reply")
    result.stdout.fnmatch_lines(["*llm() override: unknown argument 'group'*"])
    result.assert_outcomes(failed=1)


def test_record_takes_a_track(bot):
    bot.makepyfile(test_rec="""
        def test_one(llm_metrics):
            llm_metrics.record("x", 1.0, track="alignment")

        def test_two(llm_metrics):
            llm_metrics.record("x", 1.0, track="policy")
    """)
    result = bot.runpytest("-p", "no:xdist", "--llm-baseline-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*llm_metrics.record('x'): track must be one of 'utility', 'alignment', "
                                 "'operations', got 'policy'*"])
    tests = json.loads((bot.path / ".llmmetrics" / "baseline.json").read_text())["tests"]
    assert tests["test_rec.py::test_one"]["metrics"]["x"]["track"] == "alignment"


def test_a_bad_track_or_group_in_the_baseline_is_named(bot):
    bot.makepyfile(test_one="""
        def test_one(llm_metrics):
            llm_metrics.record("x", 1.0)
    """)
    folder = bot.path / ".llmmetrics"
    folder.mkdir()
    entry = {"kind": "x", "mean": 1.0, "n": 1, "higher_is_better": None, "track": "safety"}
    (folder / "baseline.json").write_text(json.dumps({"format": 1, "tests": {"test_one.py::test_one": {
        "fingerprint": {}, "metrics": {"x": entry}}}}, indent=2))
    result = bot.runpytest("-p", "no:xdist")
    assert "metrics['x'].track: 'safety' is not a track (utility, alignment or operations)" in \
        result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_unchanged_metrics_do_not_dilute_a_pooled_regression():
    """Metrics that cannot move (no test changed) are no false discoveries: they stay out of the FDR family."""
    def suite(extra: int, words: list[int]) -> dict:
        return {f"t.py::test_{i}": {"metrics": {"word_count": value_entry(w),
                                                **{f"x{j}": value_entry(1.0, kind=f"x{j}") for j in range(extra)}}}
                for i, w in enumerate(words)}

    for extra in (0, 5, 50):
        assert suite_verdict(suite(extra, [29, 28, 30]), suite(extra, [30, 30, 31]), "word_count") == "regressed"


def test_a_renamed_check_is_pooled_on_its_own():
    base = {f"t.py::test_{i}": {"metrics": {"word_count": value_entry(10), "essay_len": value_entry(100 + i)}}
            for i in range(4)}
    cur = {f"t.py::test_{i}": {"metrics": {"word_count": value_entry(10), "essay_len": value_entry(110 + i)}}
           for i in range(4)}
    for test in (*base.values(), *cur.values()):
        test["metrics"]["essay_len"]["kind"] = "word_count"  # metrics.word_count(...).named("essay_len")
    found = {a.metric: a for a in pooled(base, cur) if a.scope == "suite"}
    assert (found["word_count"].delta, found["word_count"].verdict) == (0.0, "unchanged")
    assert (found["essay_len"].delta, found["essay_len"].verdict) == (10.0, "regressed")


def test_group_none_is_no_group_from_that_marker(bot):
    bot.makepyfile(test_none="""
        import pytest

        pytestmark = pytest.mark.llm(group="billing")

        @pytest.mark.llm(group=None)
        def test_one(llm_metrics):
            llm_metrics.record("x", 1.0)
    """)
    bot.runpytest("-p", "no:xdist", "--llm-baseline-update").assert_outcomes(passed=1)
    tests = json.loads((bot.path / ".llmmetrics" / "baseline.json").read_text())["tests"]
    assert tests["test_none.py::test_one"]["metrics"]["x"]["group"] == "billing"


def test_names_stay_aligned_short_and_escaped_in_the_tables():
    from pytest_llmmetrics.baseline import render

    base = {f"t.py::test_{i}": {"metrics": {"m": {**value_entry(1.0 + i), "group": group}}}
            for i, group in enumerate(["账单 <b>billing</b> 🧾", "账单 <b>billing</b> 🧾", "shipping", "shipping"])}
    cur = {t: {"metrics": {"m": {**e["metrics"]["m"], "mean": e["metrics"]["m"]["mean"] + 1}}} for t, e in base.items()}
    lines = [line for line, _ in render.pooled_table(pooled(base, cur))]
    ends = {line.index(" regressed") + len(" regressed") for line in lines[1:]}
    from pytest_llmmetrics.display import width
    assert len({width(line) for line in lines[1:]}) == 1 and ends  # same columns whatever the script
    markdown = render.markdown("total", [], pooled(base, cur))
    assert "| group `账单 <b>billing</b> 🧾` |" in markdown
    long_id = "t.py::test_" + "x" * 3000
    rows = compare({long_id: {"metrics": {"m": value_entry(1.0)}}}, {long_id: {"metrics": {"m": value_entry(2.0)}}},
                   Tolerances())
    (header, _), (line, _) = render.table(rows, verbose=False)
    assert len(line) < 250 and "\u2026" in line and line.startswith("t.py::test_xxx")


def test_the_interval_of_a_pass_rate_stays_within_what_a_rate_can_move():
    """Few tests and a large change: the t interval would reach past -100 points; a rate cannot."""
    base = {f"t.py::test_{i}": {"metrics": {"no_refusal": rate_entry(2, 2)}} for i in range(4)}
    cur = {f"t.py::test_{i}": {"metrics": {"no_refusal": rate_entry(2 if i % 2 else 0, 2)}} for i in range(4)}
    (suite,) = [a for a in pooled(base, cur) if a.scope == "suite"]
    assert suite.delta == pytest.approx(-0.5)
    assert suite.low == -1.0 and suite.high <= 0.0  # 100 % before: the change lies in [-1, 0]
    assert aggregate.format_interval(suite).startswith("[-100.0, ")
