"""The delta report as a CI gate, black-box (serial and -n 2): right comparisons, quiet, nothing dropped, no crash."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest
from conftest import dedent

SAMPLED = dedent(
    """
    import os
    import pytest
    from pytest_llmmetrics import Response, metrics

    WORDS = [int(w) for w in os.environ.get("WORDS", "12,13,13,14,13").split(",")]
    LATENCY = float(os.environ.get("LATENCY", "1.0"))

    def test_lengths(llm_metrics):
        replies = [" ".join(["w"] * n) for n in WORDS]
        llm_metrics.expect(replies, metrics.word_count(max=60))
        llm_metrics.expect(replies, metrics.char_count(max=1000), pass_rate=0.8)

    def test_latency(llm_metrics):
        replies = [Response("ok", latency_s=LATENCY * (1 + i / 50)) for i in range(5)]
        llm_metrics.expect(replies, metrics.latency(max=10))

    def test_score(llm_metrics):
        llm_metrics.record("score", len(WORDS) + sum(WORDS) / 100)
    """
)


def report_of(pytester: pytest.Pytester, name: str = "report.json") -> dict:
    return json.loads((pytester.path / name).read_text())


def rows_by_metric(report: dict) -> dict:
    return {(r["test"].split("::")[1], r["metric"]): r for r in report["rows"]}


def test_sampled_numbers_are_compared_by_their_values(run, bot, monkeypatch):
    bot.makepyfile(test_sampled=SAMPLED)
    run("--llm-baseline-update").assert_outcomes(passed=3)
    baseline = json.loads((bot.path / ".llmmetrics" / "baseline.json").read_text())["tests"]
    lengths = baseline["test_sampled.py::test_lengths"]["metrics"]
    assert lengths["word_count"]["scale"] == "numeric" and lengths["word_count"]["higher_is_better"] is False
    assert lengths["pass_rate[char_count]"]["scale"] == "binary" and lengths["pass_rate[char_count]"]["n"] == 5
    assert baseline["test_sampled.py::test_score"]["metrics"]["score"]["higher_is_better"] is None

    monkeypatch.setenv("WORDS", "41,43,44,42,45")  # every sample still under 60: only the values moved
    monkeypatch.setenv("LATENCY", "4.0")
    result = run("--llm-fail-on-regression", "--llm-report-json", "report.json")
    result.assert_outcomes(passed=3)
    assert result.ret == 1
    rows = rows_by_metric(report_of(bot))
    assert rows[("test_lengths", "word_count")]["verdict"] == "regressed"
    assert rows[("test_lengths", "word_count")]["current"] == "43 (n=5)"
    assert rows[("test_lengths", "char_count")]["verdict"] == "regressed"
    assert rows[("test_latency", "latency_s")]["verdict"] == "regressed"
    assert rows[("test_lengths", "pass_rate[char_count]")]["verdict"] == "unchanged"
    assert rows[("test_score", "score")]["verdict"] == "changed"  # no direction: shown, never failing
    result.stdout.fnmatch_lines(["*test_lengths*word_count*13 (n=5)*43 (n=5)*+30*regressed*",
                                 "*--llm-fail-on-regression: 3 regressed metric(s) fail this run"])


def test_nothing_changed_is_quiet_and_inconclusive_rows_get_their_own_line(run, bot):
    bot.makepyfile(test_rates=dedent(
        """
        import pytest
        from pytest_llmmetrics import metrics

        @pytest.mark.parametrize("i", range(6))
        def test_rate(i, llm_metrics):
            replies = ["Paris"] * 7 + ["Lyon"] * 3
            llm_metrics.expect(replies, metrics.contains("Paris"), pass_rate=0.5)
        """))
    run("--llm-baseline-update").assert_outcomes(passed=6)
    result = run("--llm-fail-on-regression")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*6 tests, 6 metrics: 0 regressed, 6 unchanged against the baseline*",
        "6 sampled metrics are inconclusive: too few samples to rule out a worsening that matters (see detectable); "
        "about * samples a side would settle them",
    ])
    assert "unstable" not in result.stdout.str()


ACCEPT = dedent(
    """
    import os
    import pytest

    def test_ok(llm_metrics):
        llm_metrics.record("m", float(os.environ.get("VALUE", "1")), higher_is_better=True)

    def test_flaky(llm_metrics):
        llm_metrics.record("m", float(os.environ.get("VALUE", "1")), higher_is_better=True)
        assert not os.environ.get("FAIL"), "this run fails"

    def test_sometimes_skipped(llm_metrics):
        if os.environ.get("SKIP"):
            pytest.skip("not today")
        llm_metrics.record("m", 1.0, higher_is_better=True)

    def test_stops_early(llm_metrics):
        assert not os.environ.get("FAIL"), "fails before recording"
        llm_metrics.record("m", 1.0, higher_is_better=True)
    """
)


def baseline_tests(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / ".llmmetrics" / "baseline.json").read_text())["tests"]


def test_accepting_counts_expected_failures_apart(run, bot, monkeypatch):
    # An xfail test is not accepted (it did not pass as an accepted state), but the summary counts it apart
    # rather than calling it a new failing test on every update; a non-strict XPASS is neither.
    bot.makepyfile(test_known=dedent(
        """
        import os
        import pytest

        def test_fixed_later(llm_metrics):
            llm_metrics.record("m", 1.0)
            if os.environ.get("BROKEN"):
                pytest.xfail("known bad case")

        @pytest.mark.xfail(reason="known bad case", strict=False)
        def test_known_bad(llm_metrics):
            llm_metrics.record("m", 0.0)
            assert False

        @pytest.mark.xfail(reason="flips", strict=False)
        def test_xpass(llm_metrics):
            llm_metrics.record("m", 0.5)
        """))
    result = run("--llm-baseline-update")
    result.assert_outcomes(passed=1, xfailed=1, xpassed=1)
    assert set(baseline_tests(bot)) == {"test_known.py::test_fixed_later"}
    result.stdout.fnmatch_lines(["baseline updated: 1 tests written to .llmmetrics/baseline.json; "
                                 "2 new xfail tests not added (1 xfailed, 1 xpassed)"])

    monkeypatch.setenv("BROKEN", "1")
    result = run("--llm-baseline-update")
    result.assert_outcomes(xfailed=2, xpassed=1)
    assert set(baseline_tests(bot)) == {"test_known.py::test_fixed_later"}  # kept as it was
    result.stdout.fnmatch_lines(["baseline updated: 0 tests written to .llmmetrics/baseline.json; "
                                 "1 earlier entry kept (1 xfailed); 2 new xfail tests not added (1 xfailed, 1 xpassed)"])


def test_accepting_keeps_what_failed_was_skipped_or_did_not_collect(run, bot, monkeypatch):
    bot.makepyfile(test_accept=ACCEPT, test_other="def test_other(llm_metrics):\n    llm_metrics.record('x', 1.0)\n")
    run("--llm-baseline-update").assert_outcomes(passed=5)
    before = baseline_tests(bot)
    assert len(before) == 5

    monkeypatch.setenv("VALUE", "2")
    monkeypatch.setenv("FAIL", "1")
    monkeypatch.setenv("SKIP", "1")
    bot.makepyfile(test_other="import nothing_by_this_name\n", test_new=dedent(
        """
        def test_new_and_failing(llm_metrics):
            llm_metrics.record("m", 1.0)
            assert False
        """))
    result = run("--llm-baseline-update", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, failed=3, skipped=1, errors=1)
    after = baseline_tests(bot)
    assert set(after) == set(before)  # nothing dropped, nothing failing added
    assert after["test_accept.py::test_ok"]["metrics"]["m"]["mean"] == 2.0  # the passing test was accepted
    assert after["test_accept.py::test_flaky"] == before["test_accept.py::test_flaky"]  # failed: kept as it was
    assert after["test_other.py::test_other"] == before["test_other.py::test_other"]  # collection error: kept
    out = result.stdout.str()
    assert " gone" not in out
    result.stdout.fnmatch_lines([
        "baseline updated: 1 tests written to .llmmetrics/baseline.json; 4 earlier entries kept "
        "(2 failed, 2 did not run); 1 new failing test not added"])

    # A complete collection that no longer holds a test removes it, and only then.
    monkeypatch.delenv("FAIL")
    monkeypatch.delenv("SKIP")
    (bot.path / "test_other.py").unlink()
    (bot.path / "test_new.py").unlink()
    result = run("--llm-baseline-update")
    result.stdout.fnmatch_lines(["*test_other.py::test_other*x*gone*",
                                 "*; 1 vanished test removed"])
    assert "test_other.py::test_other" not in baseline_tests(bot)


def test_a_crashed_xdist_worker_drops_nothing(bot, monkeypatch):
    bot.makepyfile(test_accept=ACCEPT, test_crash=dedent(
        """
        import os

        def test_crash(llm_metrics):
            llm_metrics.record("m", 1.0)
            if os.environ.get("CRASH"):
                os._exit(1)
        """))
    bot.runpytest("-n", "2", "--llm-baseline-update").assert_outcomes(passed=5)
    before = baseline_tests(bot)
    monkeypatch.setenv("CRASH", "1")
    result = bot.runpytest("-n", "2", "--llm-baseline-update", "-p", "no:randomly")
    assert "crashed" in result.stdout.str()
    assert set(baseline_tests(bot)) == set(before)
    assert " gone" not in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_an_interrupted_run_reports_nothing_gone_and_keeps_the_baseline(bot, monkeypatch):
    bot.makepyfile(test_a=dedent(
        """
        import os

        def test_first(llm_metrics):
            llm_metrics.record("m", 1.0, higher_is_better=True)
            if os.environ.get("STOP"):
                raise KeyboardInterrupt

        def test_second(llm_metrics):
            llm_metrics.record("m", 1.0, higher_is_better=True)

        def test_third(llm_metrics):
            llm_metrics.record("m", 1.0, higher_is_better=True)
        """))
    bot.runpytest("--llm-baseline-update").assert_outcomes(passed=3)
    before = (bot.path / ".llmmetrics" / "baseline.json").read_text()
    monkeypatch.setenv("STOP", "1")
    result = bot.runpytest_subprocess("--llm-baseline-update")  # a Ctrl-C must not reach the run around it
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert " gone" not in result.stdout.str()
    assert (bot.path / ".llmmetrics" / "baseline.json").read_text() == before


def test_paths_that_can_never_be_written_are_usage_errors(run, bot):
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    (bot.path / "afile").write_text("")
    (bot.path / "adir").mkdir()
    bot.makeini("[pytest]\nllm_metrics_dir = afile/metrics\n")
    result = run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "llm_metrics_dir:" in result.stderr.str() and "afile is a file" in result.stderr.str()
    bot.makeini("[pytest]\n")
    result = run("--llm-report-json", "adir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llm-report-json / llm_report_json:" in result.stderr.str() and "is a directory" in result.stderr.str()
    for output in (result.stdout.str(), result.stderr.str()):
        assert "Traceback" not in output and "INTERNALERROR" not in output


def test_files_that_cannot_be_written_at_the_end_are_warnings(run, bot, monkeypatch, tmp_path):
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    (bot.path / ".llmmetrics").mkdir()
    (bot.path / ".llmmetrics" / "history").write_text("not a folder")  # the history cannot be written
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing" / "summary.md"))
    result = run("--llm-fail-on-regression")
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*= llm metrics =*",
        "1 tests, 1 metrics: 0 regressed, 1 new, 0 unchanged*",
        "warning: could not write .llmmetrics/history*: *",
        f"warning: could not write {tmp_path / 'missing' / 'summary.md'}: No such file or directory",
    ])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


NAMES = dedent(
    """
    def test_names(llm_metrics):
        llm_metrics.record("nul\\x00byte", 1.0)
        llm_metrics.record("two\\nlines | pipe", 2.0)
        llm_metrics.record("esc\\x1b[31mred", 3.0)
        llm_metrics.record("tick`s", 4.0)
    """
)


def test_any_metric_name_keeps_junit_terminal_and_markdown_intact(run, bot, monkeypatch, tmp_path):
    bot.makepyfile(test_names=NAMES)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run("--junitxml", "junit.xml", "--llm-report-json", "report.json")
    result.assert_outcomes(passed=1)
    props = {p.get("name"): p.get("value") for p in ET.parse(bot.path / "junit.xml").iter("property")}
    assert props == {"llm:nul\\x00byte": "1.0", "llm:two\\nlines | pipe": "2.0", "llm:esc\\x1b[31mred": "3.0",
                     "llm:tick`s": "4.0"}
    out = result.stdout.str()
    assert "\x1b[31mred" not in out and "esc\\x1b[31mred" in out
    assert "two\\nlines | pipe" in out
    table = [line for line in summary.read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 5  # header and four rows, one line each
    assert "| `` tick`s `` |" in summary.read_text() and "two\\nlines \\| pipe" in summary.read_text()
    assert {r["metric"] for r in report_of(bot)["rows"]} == {"nul\x00byte", "two\nlines | pipe", "esc\x1b[31mred",
                                                            "tick`s"}


def test_tolerance_mistakes_are_explained(run, bot):
    bot.makepyfile(test_a=dedent(
        """
        def test_a(llm_metrics):
            llm_metrics.record("similarity[x]", 0.9, higher_is_better=True)
        """))
    result = run("--llm-tolerance", "simlarity:0.02")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["--llm-tolerance: no metric or kind is named 'simlarity'; did you mean 'similarity'*"])
    for spec, message in (("0.01,0.02", "two default values"), ("-1", "'-1' is negative")):
        result = run("--llm-tolerance", spec)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert "--llm-tolerance / llm_tolerance: " in result.stderr.str() and message in result.stderr.str()


def test_accepting_a_run_in_which_every_test_failed_writes_no_empty_baseline(run, bot):
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n    assert False\n")
    result = run("--llm-baseline-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["baseline NOT written: no test that records metrics passed*"])
    assert not (bot.path / ".llmmetrics" / "baseline.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_metrics_folder_is_a_warning(bot):  # pragma: no cover - CI runs as root
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    folder = bot.path / ".llmmetrics"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = bot.runpytest("--llm-baseline-update")
    finally:
        folder.chmod(0o700)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["warning: could not write .llmmetrics*Permission denied",
                                 "baseline NOT updated (see the warning above)"])


def test_recordings_that_cannot_be_written_are_a_line_not_a_crash(run, bot):
    bot.makepyfile(test_a=dedent(
        """
        import pytest

        @pytest.mark.llm(model="py:bot:reply")
        def test_a(llm):
            llm("Say hi")
        """))
    (bot.path / "__recordings__").write_text("a file where the folder should be")
    result = run("--llm-record-mode=new_episodes")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["__recordings__/test_a.llm.json NOT updated: could not write it: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_reports_never_replace_devices_pipes_links_or_the_plugins_own_files(run, bot, monkeypatch):
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    run("--llm-baseline-update").assert_outcomes(passed=1)
    baseline = (bot.path / ".llmmetrics" / "baseline.json").read_text()
    os.mkfifo(bot.path / "fifo")
    for target, message in (("fifo", "is not a regular file"), (".llmmetrics/baseline.json", "the plugin's own file"),
                            (".llmmetrics/history/report.json", "the plugin's own file")):
        result = run("--llm-report-json", target)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, target
        assert message in result.stderr.str()
    (bot.path / "real.json").write_text("")
    (bot.path / "link.json").symlink_to("real.json")
    run("--llm-report-json", "link.json").assert_outcomes(passed=1)
    assert (bot.path / "link.json").is_symlink() and json.loads((bot.path / "real.json").read_text())["rows"]
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(bot.path / ".llmmetrics" / "baseline.json"))
    result = run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["warning: could not write .llmmetrics/baseline.json: it is the plugin's own file*"])
    assert (bot.path / ".llmmetrics" / "baseline.json").read_text() == baseline
    assert (bot.path / "fifo").exists() and not (bot.path / "fifo").is_file()


def test_a_report_never_replaces_another_file(run, bot, monkeypatch):
    """Not a test module, not the JUnit XML, not the GitHub summary, not the other report: only an earlier report."""
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    (bot.path / "notes.md").write_text("keep me\n")
    cases = [
        (["--llm-report-html", "test_a.py"], "--llm-report-html / llm_report_html: {} exists and is not a report "
         "written by pytest-llmmetrics; writing the report would replace it."),
        (["--llm-report-json", "notes.md"], "--llm-report-json / llm_report_json: {} exists and is not a report"),
        (["--llm-report-html", "r.out", "--llm-report-json", "r.out"], "is also where --llm-report-json writes"),
        (["--llm-report-html", "j.xml", "--junitxml", "j.xml"], "is also where --junitxml writes"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        assert message.format(bot.path / args[1]) in result.stderr.str(), result.stderr.str()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(bot.path / "summary.md"))
    result = run("--llm-report-html", "summary.md")
    assert "is also where $GITHUB_STEP_SUMMARY writes" in result.stderr.str()
    assert (bot.path / "test_a.py").read_text().startswith("def test_a") and \
        (bot.path / "notes.md").read_text() == "keep me\n" and not (bot.path / "r.out").exists()
    # An earlier report is replaced, and each run says where its reports went.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    for _ in range(2):
        result = run("--llm-report-html", "out/r.html", "--llm-report-json", "r.json")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["HTML report: out/r.html", "JSON report: r.json"])


def test_a_run_without_metrics_still_replaces_the_reports_asked_for(run, bot):
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    run("--llm-report-html", "r.html", "--llm-report-json", "r.json").assert_outcomes(passed=1)
    bot.makepyfile(test_a="def test_a():\n    pass\n")
    result = run("--llm-report-html", "r.html", "--llm-report-json", "r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["HTML report: r.html (no metrics recorded)", "JSON report: r.json (no metrics recorded)"])
    assert "llm metrics" not in result.stdout.str()
    assert json.loads((bot.path / "r.json").read_text())["rows"] == []
    assert "test_a" not in (bot.path / "r.html").read_text()
    assert not (bot.path / ".llmmetrics" / "history").exists() or \
        len(list((bot.path / ".llmmetrics" / "history").glob("*.json"))) == 1


def test_report_paths_in_the_ini_file_are_relative_to_the_rootdir(bot):
    bot.makeini("[pytest]\nllm_report_json = out/r.json\n")
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    (bot.path / "sub").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(bot.path / "sub")
        result = bot.runpytest("-p", "no:xdist", str(bot.path))
    result.assert_outcomes(passed=1)
    assert (bot.path / "out" / "r.json").is_file() and not (bot.path / "sub" / "out").exists()


def test_a_directory_where_the_recordings_file_belongs_is_named(run, bot):
    bot.makepyfile(test_a=dedent(
        """
        import pytest

        @pytest.mark.llm(model="py:bot:reply")
        def test_a(llm):
            llm("Say hi")
        """))
    (bot.path / "__recordings__" / "test_a.llm.json").mkdir(parents=True)
    result = run("--llm-record-mode=none")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_a.llm.json: a directory is where this file belongs; move it away*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
