"""Metric trends: runs from the history and from the baseline's commits, per-metric series, sparklines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings

import pytest

from pytest_llmmetrics.baseline import stats, store, trend
from pytest_llmmetrics.baseline.trend import Point, Run, all_series, load_runs, series, sparkline
from pytest_llmmetrics.errors import LLMMetricsWarning

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
TEST = "tests/test_bot.py::test_reply"
FP = {"model": "local", "params": '{"temperature": 0}', "prompt": "3f2a"}


def entry(mean, n=1, *, std=0.0, passed=None, scale="numeric"):
    return {"higher_is_better": True, "kind": "score", "mean": mean, "n": n, "passed": passed, "scale": scale,
            "std": std, "threshold": None}


def recorded(fingerprint=None, **metrics):
    return {TEST: {"fingerprint": dict(FP if fingerprint is None else fingerprint), "metrics": metrics}}


def run(time, fingerprint=None, source="run", commit=None, **metrics):
    return Run(time, source, commit, recorded(fingerprint, **metrics))


def write_run(metrics_dir, name, time, tests, commit=None):
    folder = metrics_dir / "history"
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": 1, "time": time, "commit": commit, "model": "local", "tests": tests}
    (folder / f"{name}.json").write_text(json.dumps(data))


@pytest.fixture
def outside_git(tmp_path, monkeypatch):
    """tmp_path, with git told not to look for a repository above it."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    return tmp_path


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository whose commits take the committer date they are given."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q")
    return path


def git(cwd, *args, date=None):
    env = dict(os.environ)
    if date:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = date
    command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false",
               *args]
    return subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit_baseline(repo, text, date):
    path = repo / ".llmmetrics" / "baseline.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"baseline {date}", date=date)
    return git(repo, "rev-parse", "HEAD")[:10]


# Local history


def test_no_history_folder_and_an_empty_one_give_no_runs(outside_git):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_runs(outside_git / ".llmmetrics", outside_git) == []
        (outside_git / ".llmmetrics" / "history").mkdir(parents=True)
        assert load_runs(outside_git / ".llmmetrics", outside_git) == []


def test_unreadable_history_files_are_skipped_with_one_warning(outside_git):
    metrics_dir = outside_git / ".llmmetrics"
    write_run(metrics_dir, "20261101T000000", "2026-11-01T00:00:00Z", recorded(score=entry(0.5)), commit="a" * 40)
    write_run(metrics_dir, "20261103T000000", "2026-11-03T00:00:00Z", recorded(score=entry(0.7)))
    (metrics_dir / "history" / "20261102T000000.json").write_text("{not json")
    write_run(metrics_dir, "20261104T000000", "2026-11-04T00:00:00Z", {TEST: {"metrics": {"score": {"mean": 1}}}})
    write_run(metrics_dir, "20261105T000000", "yesterday", recorded(score=entry(0.9)))

    with pytest.warns(LLMMetricsWarning) as caught:
        runs = load_runs(metrics_dir, outside_git)

    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"skipped 3 unreadable run history files in {metrics_dir / 'history'} (first: ")
    assert "20261105T000000.json: 'time' is 'yesterday'" in message  # the newest is read first
    assert [(r.time, r.source, r.commit) for r in runs] == [
        ("2026-11-01T00:00:00Z", "run", "a" * 10), ("2026-11-03T00:00:00Z", "run", None)]
    assert [p.mean for p in series(runs, TEST, "score")] == [0.5, 0.7]


def test_a_run_written_by_the_store_is_read_back(outside_git):
    metrics_dir = outside_git / ".llmmetrics"
    tests = recorded(score=entry(0.25, 4, std=0.5))
    store.write_history(metrics_dir, tests, model="local", root=outside_git)

    [loaded] = load_runs(metrics_dir, outside_git)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", loaded.time)
    assert (loaded.source, loaded.commit, loaded.tests) == ("run", None, tests)


def test_only_the_newest_max_runs_are_read(outside_git):
    metrics_dir = outside_git / ".llmmetrics"
    for day in range(1, 6):
        write_run(metrics_dir, f"2026110{day}", f"2026-11-0{day}T00:00:00Z", recorded(score=entry(day)))

    runs = load_runs(metrics_dir, outside_git, max_runs=3)

    assert [p.mean for p in series(runs, TEST, "score")] == [3.0, 4.0, 5.0]


def test_without_git_the_history_still_loads(outside_git, monkeypatch):
    metrics_dir = outside_git / ".llmmetrics"
    write_run(metrics_dir, "20261101", "2026-11-01T00:00:00Z", recorded(score=entry(1)))
    (metrics_dir / "baseline.json").write_text(store.dumps_baseline(recorded(score=entry(2))))
    monkeypatch.setenv("PATH", str(outside_git / "no-such-bin"))

    assert [r.source for r in load_runs(metrics_dir, outside_git)] == ["run"]


# Committed baselines


@needs_git
def test_a_baseline_outside_git_or_untracked_adds_no_runs(outside_git, repo):
    for root in (outside_git / "plain", repo):
        metrics_dir = root / ".llmmetrics"
        metrics_dir.mkdir(parents=True)
        (metrics_dir / "baseline.json").write_text(store.dumps_baseline(recorded(score=entry(1))))
        assert load_runs(metrics_dir, root) == []


@needs_git
def test_each_committed_version_of_the_baseline_is_a_point(repo):
    shas = [commit_baseline(repo, store.dumps_baseline(recorded(score=entry(value))), date)
            for value, date in ((0.6, "2026-11-01T10:00:00Z"), (0.7, "2026-11-02T10:00:00Z"),
                                (0.8, "2026-11-03T10:00:00Z"))]
    write_run(repo / ".llmmetrics", "20261102T120000", "2026-11-02T12:00:00Z", recorded(score=entry(0.75)))

    runs = load_runs(repo / ".llmmetrics", repo)

    assert [(r.time, r.source, r.commit) for r in runs] == [
        ("2026-11-01T10:00:00Z", "baseline", shas[0]),
        ("2026-11-02T10:00:00Z", "baseline", shas[1]),
        ("2026-11-02T12:00:00Z", "run", None),
        ("2026-11-03T10:00:00Z", "baseline", shas[2]),
    ]
    assert [(p.mean, p.source, p.notes) for p in series(runs, TEST, "score")] == [
        (0.6, "baseline", ("baseline accepted",)),
        (0.7, "baseline", ("baseline accepted",)),
        (0.75, "run", ()),
        (0.8, "baseline", ("baseline accepted",)),
    ]


@needs_git
def test_reformatted_broken_and_deleted_versions_add_no_points(repo):
    tests = recorded(score=entry(0.6))
    first = commit_baseline(repo, store.dumps_baseline(tests), "2026-11-01T10:00:00Z")
    commit_baseline(repo, json.dumps({"format": 1, "tests": tests}, indent=4), "2026-11-02T10:00:00Z")
    commit_baseline(repo, "{broken", "2026-11-03T10:00:00Z")
    commit_baseline(repo, json.dumps({"format": 1, "tests": {TEST: {"metrics": {"score": {}}}}}),
                    "2026-11-04T10:00:00Z")
    (repo / ".llmmetrics" / "baseline.json").unlink()
    git(repo, "commit", "-q", "-a", "-m", "no baseline", date="2026-11-05T10:00:00Z")
    last = commit_baseline(repo, store.dumps_baseline(recorded(score=entry(0.9))), "2026-11-06T10:00:00Z")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # old commits cannot be fixed: nothing to warn about
        runs = load_runs(repo / ".llmmetrics", repo)

    assert [(r.time, r.commit) for r in runs] == [("2026-11-01T10:00:00Z", first), ("2026-11-06T10:00:00Z", last)]


@needs_git
def test_only_the_last_max_commits_are_read(repo):
    for day in range(1, 5):
        commit_baseline(repo, store.dumps_baseline(recorded(score=entry(day))), f"2026-11-0{day}T10:00:00Z")

    runs = load_runs(repo / ".llmmetrics", repo, max_commits=2)

    assert [p.mean for p in series(runs, TEST, "score")] == [3.0, 4.0]
    assert load_runs(repo / ".llmmetrics", repo, max_commits=0) == []


@needs_git
def test_paths_through_symlinks_and_odd_names_are_found(repo, tmp_path):
    metrics_dir = repo / "llm metrics ü"
    metrics_dir.mkdir()
    (metrics_dir / "baseline.json").write_text(store.dumps_baseline(recorded(score=entry(1))))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline", date="2026-11-01T10:00:00Z")
    (tmp_path / "link").symlink_to(repo)

    runs = load_runs(tmp_path / "link" / "llm metrics ü", tmp_path / "link")

    assert [(r.time, r.source, r.commit) for r in runs] == [
        ("2026-11-01T10:00:00Z", "baseline", git(repo, "rev-parse", "HEAD")[:10])]


@needs_git
def test_a_baseline_entry_that_did_not_change_adds_no_point(repo):
    other = "tests/test_bot.py::test_other"
    for value, date in ((0.6, "2026-11-01T10:00:00Z"), (0.7, "2026-11-02T10:00:00Z")):
        tests = {**recorded(score=entry(value)), other: {"fingerprint": FP, "metrics": {"score": entry(0.5)}}}
        commit_baseline(repo, store.dumps_baseline(tests), date)

    runs = load_runs(repo / ".llmmetrics", repo)

    assert [p.mean for p in series(runs, TEST, "score")] == [0.6, 0.7]
    assert [(p.time, p.mean) for p in series(runs, other, "score")] == [("2026-11-01T10:00:00Z", 0.5)]


# Series


def test_a_fingerprint_change_is_noted_where_it_happened():
    changed = {**FP, "model": "gpt-x", "prompt": "77aa"}
    runs = [run("2026-11-01T00:00:00Z", score=entry(1)), run("2026-11-02T00:00:00Z", score=entry(2)),
            run("2026-11-03T00:00:00Z", changed, score=entry(3)), run("2026-11-04T00:00:00Z", changed, score=entry(4)),
            run("2026-11-05T00:00:00Z", {**changed, "params": "{}", "embedding_model": "e5"}, score=entry(5))]

    assert [p.notes for p in series(runs, TEST, "score")] == [
        (), (), ("model changed", "prompt changed"), (), ("sampling parameters changed", "embedding model changed")]


def test_a_run_without_the_metric_is_a_gap_and_a_change_inside_it_still_shows():
    changed = {**FP, "model": "gpt-x"}
    runs = [run("2026-11-01T00:00:00Z", score=entry(1), words=entry(10)),
            run("2026-11-02T00:00:00Z", changed, words=entry(11)),
            run("2026-11-03T00:00:00Z", changed, score=entry(3), words=entry(12))]

    score = series(runs, TEST, "score")
    assert [(p.time, p.mean, p.notes) for p in score] == [
        ("2026-11-01T00:00:00Z", 1.0, ()), ("2026-11-03T00:00:00Z", 3.0, ("model changed",))]
    assert [p.notes for p in series(runs, TEST, "words")] == [(), ("model changed",), ()]
    assert series(runs, TEST, "missing") == []
    assert series(runs, "tests/test_none.py::test_x", "score") == []


def test_all_series_matches_series_for_every_pair():
    other = "tests/test_bot.py::test_other"
    runs = [Run("2026-11-01T00:00:00Z", "run", None,
                {**recorded(score=entry(1)), other: {"fingerprint": {}, "metrics": {"a": entry(1), "b": entry(2)}}}),
            Run("2026-11-02T00:00:00Z", "baseline", "abc", {other: {"metrics": {"b": entry(3)}}}),
            run("2026-11-03T00:00:00Z", score=entry(0.5, 4, passed=2, scale="binary"))]

    every = all_series(runs)

    assert list(every) == [(other, "a"), (other, "b"), (TEST, "score")]  # sorted
    assert every == {(test, metric): series(runs, test, metric) for test, metric in every}
    assert [p.mean for p in every[other, "b"]] == [2.0, 3.0]


def test_intervals_of_pass_rates_and_means():
    runs = [run("2026-11-01T00:00:00Z", rate=entry(0.8, 20, std=0.41, passed=16, scale="binary"),
                legacy_rate=entry(1.0, 3, std=None, passed=3, scale=None),
                mean=entry(0.3, 5, std=0.1), no_std=entry(0.3, 5, std=None), single=entry(0.4, 1, passed=1))]

    [rate], [legacy], [mean], [no_std], [single] = (series(runs, TEST, m)
                                                   for m in ("rate", "legacy_rate", "mean", "no_std", "single"))

    # Wilson, 90 %: scipy.stats.binomtest(16, 20).proportion_ci(confidence_level=0.9, method="wilson")
    assert (rate.low, rate.high, rate.binary) == (pytest.approx(0.6216233), pytest.approx(0.9068820), True)
    assert (legacy.low, legacy.high, legacy.binary) == (pytest.approx(0.5258044), 1.0, True)  # 3 of 3
    # Student's t, 90 %: 0.3 -+ t(0.95, 4) * 0.1 / sqrt(5)
    assert (mean.low, mean.high, mean.binary) == (pytest.approx(0.2046609), pytest.approx(0.3953391), False)
    assert (no_std.low, no_std.high) == (None, None)  # no spread stored: no interval made up
    assert (single.mean, single.n, single.low, single.high) == (0.4, 1, None, None)
    assert trend._Z90 == pytest.approx(stats.z_value(0.05), abs=1e-12)


def test_a_point_carries_its_run():
    runs = [run("2026-11-01T00:00:00Z", source="baseline", commit="0123456789", score=entry(2, 1))]

    assert series(runs, TEST, "score") == [
        Point("2026-11-01T00:00:00Z", "baseline", "0123456789", 2.0, 1, None, None, ("baseline accepted",), False)]


def test_the_current_run_is_appended_as_a_run():
    now = Run.current(recorded(score=entry(1)), "f" * 40)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now.time)
    assert (now.source, now.commit) == ("run", "f" * 10)
    assert Run.current({}).commit is None


# Sparklines


@pytest.mark.parametrize(("values", "width", "expected"), [
    ([], 12, ""),
    ([0.5], 12, "▄"),
    ([3, 3, 3], 12, "▄▄▄"),
    ([1, 2, 3, 4, 5, 6, 7, 8], 12, "▁▂▃▄▅▆▇█"),
    ([8, 1], 12, "█▁"),
    ([0.91, 0.93, 0.92, 0.80, 0.95], 12, "▆▇▇▁█"),
    (list(range(20)), 4, "▁▃▆█"),  # the last four, scaled among themselves
    ([1, 2, 3], 0, ""),
    ([1, float("nan"), 3, float("inf")], 12, "▁ █ "),
    ([-1e308, 1e308], 12, "▁█"),
])
def test_sparkline(values, width, expected):
    assert sparkline(values, width) == expected
