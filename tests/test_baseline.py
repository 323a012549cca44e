"""Baseline store, delta report, CI outputs and xdist aggregation, black-box (serial and -n 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import dedent

from pytest_llmmetrics.baseline import store

SUITE = dedent(
    """
    import os
    import pytest
    from pytest_llmmetrics import metrics

    WORDS = int(os.environ.get("WORDS", "5"))
    RATE = float(os.environ.get("RATE", "0.9"))
    PROMPT = os.environ.get("PROMPT", "Say hi")

    @pytest.mark.llm(model="py:bot:reply")
    def test_len(llm, llm_metrics):
        llm(PROMPT)
        llm_metrics.expect(" ".join(["w"] * WORDS), metrics.word_count(max=50))
        llm_metrics.record("score", 0.5 + WORDS / 100, higher_is_better=True)

    @pytest.mark.parametrize("i", range(3))
    def test_rate(i, llm_metrics):
        n = 75
        replies = ["Paris"] * int(RATE * n) + ["Lyon"] * (n - int(RATE * n))
        llm_metrics.expect(replies, metrics.contains("Paris"), pass_rate=0.1)

    def test_plain():
        pass
    """
)


@pytest.fixture
def suite(bot, monkeypatch):
    bot.makepyfile(test_suite=SUITE)
    for name in ("WORDS", "RATE", "PROMPT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    return bot


def baseline_of(pytester):
    return json.loads((pytester.path / ".llmmetrics" / "baseline.json").read_text())


def test_update_report_and_fail_on_regression(run, suite, monkeypatch):
    result = run("--llm-baseline-update")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*= llm metrics =*", "*4 tests, 5 metrics: 0 regressed, 5 new, 0 unchanged*",
                                 "baseline updated: 4 tests written to .llmmetrics/baseline.json"])
    data = baseline_of(suite)
    assert data["tests"]["test_suite.py::test_len"]["metrics"]["word_count"] == {
        "group": "test_suite.py", "higher_is_better": False, "kind": "word_count", "mean": 5.0, "n": 1, "passed": 1,
        "scale": "numeric", "std": 0.0, "threshold": "<= 50", "track": "utility"}
    assert data["tests"]["test_suite.py::test_rate[0]"]["metrics"]["contains[Paris]"]["passed"] == 67
    assert "test_suite.py::test_plain" not in data["tests"]

    result = run()  # nothing changed
    result.stdout.fnmatch_lines(["*4 tests, 5 metrics: 0 regressed, 5 unchanged against the baseline .llmmetrics/baseline.json"])
    assert "word_count" not in result.stdout.str().split("llm metrics")[1].split("\n4 tests")[0]  # unchanged: hidden
    result = run("-v")
    result.stdout.fnmatch_lines(["*test_suite.py::test_len*word_count*5*5*+0*unchanged*"])

    monkeypatch.setenv("WORDS", "9")
    monkeypatch.setenv("RATE", "0.6")
    monkeypatch.setenv("PROMPT", "Say hello")
    result = run("--llm-fail-on-regression")
    assert result.ret == 1
    result.assert_outcomes(passed=5)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "test *metric*baseline*current*delta*verdict*detectable*why",
        "test_suite.py::test_len *word_count*5*9*+4*regressed*prompt changed",
        "test_suite.py::test_rate[[]0[]]*contains[[]Paris[]]*89% (67/75)*60% (45/75)*-29 pts*regressed*",
        "*4 tests, 5 metrics: 4 regressed, 1 improved, 0 unchanged against the baseline*",
        "pooled over tests (paired by test, tests as clusters; intervals: one-sided 96.5% bounds)",
        "pooled*metric*baseline*current*delta*interval*tests*verdict",
        "suite*contains*89%*60%*-29.3 pts*[[]-29.3, -29.3[]]*3*regressed",
        "--llm-fail-on-regression: 4 regressed metric(s) and 1 regressed pooled comparison(s) fail this run",
    ])
    assert "track utility" not in out  # the same tests as the suite row: not repeated
    assert out.index("regressed") < out.index("improved")  # regressions first
    result = run()  # without the flag, the same regressions do not fail the run
    assert result.ret == 0


def test_outputs_json_junit_and_github_summary(run, suite, monkeypatch, tmp_path):
    run("--llm-baseline-update").assert_outcomes(passed=5)
    monkeypatch.setenv("WORDS", "9")
    summary = tmp_path / "summary.md"
    summary.write_text("existing line\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run("--llm-report-json", "out/report.json", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=5)
    report = json.loads((suite.path / "out" / "report.json").read_text())
    assert report["totals"]["regressed"] == 1 and report["totals"]["improved"] == 1
    row = report["rows"][0]
    assert (row["test"], row["metric"], row["verdict"]) == ("test_suite.py::test_len", "word_count", "regressed")
    assert row["values"]["baseline"]["mean"] == 5.0 and row["values"]["current"]["mean"] == 9.0
    text = summary.read_text()
    assert text.startswith("existing line\n## llm metrics")
    assert "| `test_suite.py::test_len` | `word_count` | 5 | 9 | +4 | **regressed** |" in text
    props = {p.get("name"): p.get("value") for p in ET.parse(suite.path / "junit.xml").iter("property")}
    assert props["llm:word_count"] == "9.0" and props["llm:score"] == "0.59"


def test_xdist_run_equals_serial_run(suite):
    serial = suite.path / "serial"
    parallel = suite.path / "parallel"
    for folder, args in ((serial, ["-p", "no:xdist"]), (parallel, ["-n", "2"])):
        suite.makeini(f"[pytest]\nllm_metrics_dir = {folder.name}\n")
        suite.runpytest(*args, "--llm-baseline-update").assert_outcomes(passed=5)
        suite.runpytest(*args, "--llm-report-json", f"{folder.name}/report.json").assert_outcomes(passed=5)
    assert (serial / "baseline.json").read_text() == (parallel / "baseline.json").read_text()
    serial_report = json.loads((serial / "report.json").read_text())
    parallel_report = json.loads((parallel / "report.json").read_text())
    assert serial_report["rows"] == parallel_report["rows"] and serial_report["totals"] == parallel_report["totals"]
    runs = [sorted((f / "history").glob("*.json")) for f in (serial, parallel)]
    assert len(runs[0]) == len(runs[1]) == 2
    assert json.loads(runs[0][-1].read_text())["tests"] == json.loads(runs[1][-1].read_text())["tests"]


def test_no_baseline_compares_with_the_last_run(suite, monkeypatch):
    suite.runpytest().assert_outcomes(passed=5)
    assert not (suite.path / ".llmmetrics" / "baseline.json").exists()
    assert (suite.path / ".llmmetrics" / "history" / ".gitignore").read_text().strip().endswith("*")
    monkeypatch.setenv("WORDS", "7")
    result = suite.runpytest()
    result.stdout.fnmatch_lines(["*word_count*5*7*+2*regressed*",
                                 "*against the last recorded run *.json (no baseline yet)"])


def test_tolerances(suite, monkeypatch):
    suite.runpytest("--llm-baseline-update").assert_outcomes(passed=5)
    monkeypatch.setenv("WORDS", "6")
    result = suite.runpytest("--llm-tolerance", "word_count:25%,score:0.02")
    result.stdout.fnmatch_lines(["*5 metrics: 0 regressed, 5 unchanged*"])
    result = suite.runpytest("--llm-tolerance", "word_count:10%")
    result.stdout.fnmatch_lines(["*word_count*5*6*+1*regressed*"])


def test_gone_entries_are_removed_only_on_a_full_run(suite):
    suite.runpytest("--llm-baseline-update").assert_outcomes(passed=5)
    (suite.path / "test_suite.py").write_text(SUITE.replace("def test_len", "def _gone"))
    result = suite.runpytest("-k", "rate", "--llm-baseline-update")
    assert " gone" not in result.stdout.str()
    assert "test_suite.py::test_len" in baseline_of(suite)["tests"]  # a partial run keeps it
    result = suite.runpytest("--llm-baseline-update")
    result.stdout.fnmatch_lines(["*test_suite.py::test_len*score*gone*", "*2 gone*",
                                 "*3 tests written to .llmmetrics/baseline.json; 1 vanished test removed"])
    assert "test_suite.py::test_len" not in baseline_of(suite)["tests"]


def test_corrupt_baseline_is_a_clear_error_and_left_untouched(suite):
    path = suite.path / ".llmmetrics" / "baseline.json"
    path.parent.mkdir()
    broken = '{\n  "format": 1,\n  "tests": {\n    "x": \n}\n'
    path.write_text(broken)
    for args in ([], ["--llm-baseline-update"], ["-n", "2", "--llm-baseline-update"]):
        result = suite.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert f"{path}:5:1: not valid JSON (Expecting value). The baseline is broken" in result.stderr.str()
        assert "Traceback" not in result.stderr.str() + result.stdout.str()
        assert path.read_text() == broken
    path.write_text('{"format": 1, "tests": {"t": {"metrics": {"m": {"mean": "high"}}}}}')
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "tests['t'].metrics['m'].higher_is_better: missing or of the wrong type" in result.stderr.str()


def test_a_suite_without_metrics_writes_nothing(pytester):
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    result = pytester.runpytest("--llm-baseline-update")
    result.assert_outcomes(passed=1)
    assert "llm metrics" not in result.stdout.str()
    assert not (pytester.path / ".llmmetrics").exists()


WRITER = """
import os, signal, sys
from pathlib import Path
from pytest_llmmetrics.baseline import store

path, stage = Path(sys.argv[1]), sys.argv[2]
tests = {f"t{i}": {"fingerprint": {}, "metrics": {"m": {"higher_is_better": True, "kind": "m", "mean": float(i),
          "n": 1, "passed": None, "std": 0.0, "threshold": None}}} for i in range(20000)}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace

class HalfWriter:  # writes half of what it is given, then the process dies
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        die()

if stage == "mid-write":
    os.fdopen = lambda fd, mode: HalfWriter(real_fdopen(fd, mode))
elif stage == "before-replace":
    os.fsync = lambda fd: (real_fsync(fd), die())
elif stage == "after-replace":
    os.replace = lambda a, b: (real_replace(a, b), die())
store.save_baseline(path, tests)
"""


@pytest.mark.parametrize(
    ("stage", "whole_new", "leftover_temp_files"),
    [("mid-write", False, 1), ("before-replace", False, 1), ("after-replace", True, 0)],
)
def test_a_run_killed_while_writing_leaves_a_whole_baseline(tmp_path, stage, whole_new, leftover_temp_files):
    """SIGKILL at each step of a write (no cleanup runs): the old file or the whole new one, never a torn mix."""
    path = tmp_path / "baseline.json"
    store.save_baseline(path, {"old": {"fingerprint": {}, "metrics": {}}})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.run([sys.executable, str(script), str(path), stage], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # it died where the stage says, not earlier
    tests = store.load_baseline(path)
    assert tests is not None and (len(tests) == 20000 if whole_new else list(tests) == ["old"])
    # A killed writer leaves its temp file beside the baseline (nothing else may): hidden, and never loaded.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".baseline.json.")]
    assert len(leftovers) == leftover_temp_files and all(name.endswith(".tmp") for name in leftovers)


def test_two_concurrent_updating_runs_never_tear_the_file(suite):
    procs = [
        subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--llm-baseline-update"],
                         cwd=suite.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, WORDS=str(5 + i)))
        for i in range(2)
    ]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    mean = baseline_of(suite)["tests"]["test_suite.py::test_len"]["metrics"]["word_count"]["mean"]
    assert mean in (5.0, 6.0)
