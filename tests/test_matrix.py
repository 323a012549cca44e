"""The model matrix: each test once per model, kept apart, and each model compared with the first named."""

from __future__ import annotations

import importlib.util
import json
import random
import re
from collections import defaultdict

import pytest

from pytest_llmmetrics.baseline.models import compare_models, not_compared
from pytest_llmmetrics.matrix import model_in, plain_nodeid

needs_local = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")

# Two scripted models: `steady` answers every refund question; `shaky` refuses the ones naming an even case
# (so a suite of 8 cases sees it refuse 4 of 8), and reports no token counts.
MODELS = '''
from pytest_llmmetrics import Response

def steady(messages, **params):
    q = messages[-1]["content"]
    return Response(text=f"Refunds take 5 to 7 days ({q}).", model="py:models:steady", latency_s=0.25,
                    prompt_tokens=10, completion_tokens=8)

def shaky(messages, **params):
    q = messages[-1]["content"]
    if any(f"case {n}" in q for n in (0, 2, 4, 6)):
        return "I'm sorry, but I can't help with that."
    return f"Refunds usually take about a week ({q})."

steady2 = steady  # another spec, the same answers

def broken(messages, **params):
    raise RuntimeError("this model is gone")
'''
STEADY, SHAKY = "py:models:steady", "py:models:shaky"
BOTH = ("--llm-model", STEADY, "--llm-model", SHAKY)

SUITE = '''
import pytest
from pytest_llmmetrics import metrics

@pytest.mark.parametrize("case", range(8))
def test_refund(llm, llm_metrics, case):
    reply = llm(f"How long do refunds take? case {case}")
    llm_metrics.expect(reply, metrics.no_refusal(), metrics.char_count(max=200))

def test_spec(llm_model_spec, llm):
    assert llm.name == llm_model_spec

@pytest.mark.llm(model="py:models:steady")
def test_own_model(llm):
    assert llm.name == "py:models:steady"

def test_no_model():
    pass

class TestGrouped:
    def test_in_class(self, llm):
        assert llm("hi")
'''


@pytest.fixture
def models(bot: pytest.Pytester) -> pytest.Pytester:
    bot.makepyfile(models=MODELS)
    return bot


def ids(result: pytest.RunResult) -> set[str]:
    return set(outcomes(result))


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Test id -> outcome from a ``-v`` run, serial (``id PASSED``) or under xdist (``PASSED id``)."""
    found = {}
    for line in result.outlines:
        m = re.match(r"(\S+::\S+) (PASSED|FAILED|SKIPPED)", line) or re.match(
            r"\[gw\d+\] \[ *\d+%\] (PASSED|FAILED|SKIPPED) (\S+::\S+)", line)
        if m:
            test, outcome = (m.group(1), m.group(2)) if "::" in m.group(1) else (m.group(2), m.group(1))
            found[test] = outcome
    return found


def test_each_test_runs_once_per_model_with_the_model_last_in_its_id(run, models, monkeypatch):
    models.makepyfile(test_bot=SUITE)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(models.path / "summary.md"))
    result = run("-v", *BOTH, "--llm-report-json", "report.json", "--llm-report-html", "report.html")
    # 8 cases x 2 models, 2 x test_spec, 2 x the class test, test_own_model and test_no_model once each;
    # shaky refuses 4 of the 8 cases.
    result.assert_outcomes(passed=18, failed=4)
    assert outcomes(result) == {
        **{f"test_bot.py::test_refund[{case}-{STEADY}]": "PASSED" for case in range(8)},
        **{f"test_bot.py::test_refund[{case}-{SHAKY}]": "FAILED" if case % 2 == 0 else "PASSED" for case in range(8)},
        **{f"test_bot.py::test_spec[{spec}]": "PASSED" for spec in (STEADY, SHAKY)},
        **{f"test_bot.py::TestGrouped::test_in_class[{spec}]": "PASSED" for spec in (STEADY, SHAKY)},
        "test_bot.py::test_own_model": "PASSED", "test_bot.py::test_no_model": "PASSED",
    }
    report = json.loads((models.path / "report.json").read_text())
    rows = {(r["metric"], r["track"]): r for r in report["models"]}
    refusal = rows[("no_refusal", "alignment")]
    assert {k: refusal[k] for k in ("model", "against", "tests", "value", "reference_value", "verdict")} == {
        "model": SHAKY, "against": STEADY, "tests": 8, "value": 0.5, "reference_value": 1.0, "verdict": "worse"}
    assert refusal["delta"] == pytest.approx(-0.5) and refusal["low"] < refusal["high"] < 0
    assert set(refusal) >= {"model", "against", "metric", "tests", "value", "reference_value", "delta", "low",
                            "high", "verdict"}
    shorter = rows[("char_count", "utility")]  # max= makes shorter better; shaky is shorter in 4 cases, longer in 4
    assert (shorter["direction"], shorter["verdict"]) == ("lower", "no difference")
    totals = {t["model"]: t for t in report["model_totals"]}
    # 10 tests each; 9 of them call the model (test_spec only looks at it)
    assert totals[STEADY] == {**totals[STEADY], "tests": 10, "failed": 0, "calls": 9, "latency_s": 2.25,
                              "prompt_tokens": 90, "completion_tokens": 72}
    assert totals[SHAKY]["failed"] == 4 and totals[SHAKY]["prompt_tokens"] is None  # it reports no tokens
    result.stdout.fnmatch_lines([
        "model comparison: each model against py:models:steady (the first named), paired by test*",
        "model*metric*track*tests*reference*value*delta*interval*verdict",
        "py:models:shaky*no_refusal*alignment*8*100%*50%*-50.0 pts*worse",
        "model*tests*failed*calls*latency*prompt tokens*completion tokens*cost",
        "py:models:steady*10*0*9*2.25 s*90*72*n/a",
        "py:models:shaky*10*4*9* s*n/a*n/a*n/a",  # its latency is measured: any value
    ])
    page = (models.path / "report.html").read_text()
    assert '<a href="#models">Models</a>' in page and '<table class="sortable" id="models-table">' in page
    assert re.search(r"<code>py:models:shaky</code>.*?<code>no_refusal</code>.*?worse", page)
    assert "<td><code>py:models:steady</code><td>10<td>0<td>9<td>2.25 s<td>90<td>72<td>n/a" in page
    summary = (models.path / "summary.md").read_text()
    assert "| `py:models:shaky` | `no_refusal` | alignment | 8 | 100% | 50% | -50.0 pts |" in summary
    assert "**worse** |" in summary and "| `py:models:steady` | 10 | 0 | 9 | 2.25 s | 90 | 72 | n/a |" in summary


def test_the_first_model_named_is_the_reference(models):
    models.makepyfile(test_bot=SUITE)
    result = models.runpytest("-p", "no:xdist", "--llm-model", SHAKY, "--llm-model", STEADY, "--llm-report-json",
                              "r.json")
    rows = {r["metric"]: r for r in json.loads((models.path / "r.json").read_text())["models"]}
    assert (rows["no_refusal"]["model"], rows["no_refusal"]["against"], rows["no_refusal"]["verdict"]) == (
        STEADY, SHAKY, "better")
    result.stdout.fnmatch_lines(["*model comparison: each model against py:models:shaky*"])


def test_the_ini_list_and_the_command_line_that_overrides_it(models):
    models.makeini(f"[pytest]\nllm_models =\n    {STEADY}\n    {SHAKY}\n")
    models.makepyfile(test_bot="def test_a(llm_model_spec, llm):\n    assert llm.name == llm_model_spec\n")
    result = models.runpytest("-p", "no:xdist", "-v")
    result.assert_outcomes(passed=2)
    assert ids(result) == {f"test_bot.py::test_a[{STEADY}]", f"test_bot.py::test_a[{SHAKY}]"}
    one = models.runpytest("-p", "no:xdist", "-v", "--llm-model", SHAKY)  # one model: no matrix, plain ids
    one.assert_outcomes(passed=1)
    assert ids(one) == {"test_bot.py::test_a"}
    assert "model comparison" not in one.stdout.str()
    twice = models.runpytest("-p", "no:xdist", "-v", "--llm-model", SHAKY, "--llm-model", SHAKY)
    assert ids(twice) == {"test_bot.py::test_a"}  # a model named twice counts once


@pytest.mark.parametrize(("ini", "args", "expected"), [
    ("llm_model = local\nllm_models = local py:models:steady\n", (),
     "llm_model and llm_models are both set in *; keep one: llm_model for one model, llm_models for the model "
     "matrix*"),
    ("", ("--llm-model", "local,openai:gpt-4o-mini"),
     "--llm-model: 'local,openai:gpt-4o-mini' names several models (or holds a space): a spec names one model. "
     "For the model matrix, give --llm-model once per model*"),
    ("", ("--llm-model", "local openai:gpt-4o-mini"), "--llm-model: 'local openai:gpt-4o-mini' names several models*"),
    ("llm_model = local py:models:steady\n", (), "llm_model in tox.ini: 'local py:models:steady' names several*"),
    ("llm_models =\n", (), "llm_models in */tox.ini is empty: name the models (llm_models = local openai:gpt-4o-mini), "
     "or remove the line to test the embedded local model"),
    ("llm_model =\n", (), "llm_model in */tox.ini is empty: name the model*"),
    ("llm_models = local\n", ("-o", "llm_models="), "llm_models (-o llm_models=) is empty: name the models*"),
    ("llm_models = local gpt4\n", (), "llm_models in tox.ini: unknown model spec 'gpt4'*"),
    ("llm_model = gpt4\n", (), "llm_model in tox.ini: unknown model spec 'gpt4'*"),
])
def test_a_bad_matrix_is_a_usage_error(models, ini, args, expected):
    models.makeini(f"[pytest]\n{ini}")
    models.makepyfile(test_a="def test_a(llm): pass")
    result = models.runpytest("-p", "no:xdist", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_metrics_a_model_never_recorded_are_said_not_compared(models, monkeypatch):
    # `broken` raises before any metric is recorded: its comparison has no row, and the report says so.
    models.makepyfile(test_bot=SUITE)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(models.path / "summary.md"))
    result = models.runpytest("-p", "no:xdist", "--llm-model", STEADY, "--llm-model", "py:models:broken",
                              "--llm-report-json", "report.json", "--llm-report-html", "report.html")
    result.stdout.fnmatch_lines([
        "no metric to compare yet*",
        "not compared with py:models:steady: py:models:broken: char_count, no_refusal (fewer than two tests "
        "recorded them under both models)"])
    report = json.loads((models.path / "report.json").read_text())
    assert report["models"] == [] and report["models_not_compared"] == {"py:models:broken": ["char_count",
                                                                                             "no_refusal"]}
    said = "not compared with py:models:steady: py:models:broken: char_count, no_refusal"
    assert f"<p>{said} (fewer than two tests" in (models.path / "report.html").read_text()
    assert f"\n{said} (fewer than two tests" in (models.path / "summary.md").read_text()


def test_not_compared_names_each_models_missing_metrics():
    one = {"fingerprint": {}, "metrics": {"score": _metric(0.5), "contains[a]": _metric(1.0)}}
    tests = {f"t.py::test[{t}-{spec}]": one for t in range(3) for spec in ("a", "b")}
    tests["t.py::test[0-c]"] = one  # c ran one test: nothing to compare
    tests["t.py::test[0-b]"] = {"fingerprint": {}, "metrics": {**one["metrics"], "extra": _metric(0.1)}}
    runs = {test: (test.rsplit("-", 1)[1][:-1], test.rsplit("-", 1)[0] + "]") for test in tests}
    rows = compare_models(tests, runs, ["a", "b", "c", "d"])
    assert {(r.model, r.metric) for r in rows} == {("b", "score"), ("b", "contains")}
    assert not_compared(tests, runs, ["a", "b", "c", "d"], rows) == {
        "b": ["extra"], "c": ["contains", "score"], "d": ["contains", "score"]}


def test_a_bad_model_in_a_marker_names_the_test_as_written(models):
    models.makepyfile(test_m='''
        import pytest

        @pytest.mark.llm(model="")
        def test_it(llm):
            pass
        ''', test_n='''
        import pytest

        @pytest.mark.llm(model="py:models:steady,py:models:shaky")
        def test_two(llm):
            pass
        ''')
    result = models.runpytest("-p", "no:xdist", *BOTH)
    result.stdout.fnmatch_lines(["*test_m.py::test_it: @pytest.mark.llm: model: model spec '' is empty*",
                                 "*test_n.py::test_two: @pytest.mark.llm: model: 'py:models:steady,py:models:shaky' "
                                 "names several models*"])
    assert "test_it[" not in result.stdout.str()


def test_a_py_module_that_fails_to_import_is_said_in_a_line(models):
    models.makepyfile(syntaxerr="def reply(messages:\n    return 'x'\n", raising="raise RuntimeError('no key')\n",
                      test_s="def test_s(llm):\n    llm('hi')\n")
    for spec, said in (("py:syntaxerr:reply", "py:syntaxerr:reply: importing 'syntaxerr' failed: SyntaxError: *"
                                              "syntaxerr.py, line 1); fix the module"),
                       ("py:raising:reply", "py:raising:reply: importing 'raising' failed: RuntimeError: no key; fix "
                                            "the module, or what it imports")):
        result = models.runpytest("-p", "no:xdist", "--llm-model", spec)
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines([f"*{said}*"])
        assert "Traceback" not in result.stdout.str() and "importlib" not in result.stdout.str()


def test_recordings_and_the_baseline_keep_each_model_apart(run, models):
    models.makepyfile(test_bot=SUITE)
    first = run(*BOTH, "--llm-record-mode=once", "--llm-baseline-update")
    first.assert_outcomes(passed=18, failed=4)
    recorded = json.loads((models.path / "__recordings__" / "test_bot.llm.json").read_text())
    by_model = defaultdict(set)
    for entry in recorded["recordings"]:
        by_model[entry["model"]].add(entry["test"])
    assert "test_bot.py::test_refund[3-py:models:steady]" in by_model[STEADY]
    assert "test_bot.py::test_refund[3-py:models:shaky]" in by_model[SHAKY]
    baseline = json.loads((models.path / ".llmmetrics" / "baseline.json").read_text())
    tests = baseline.get("tests", baseline)
    assert "test_bot.py::test_refund[1-py:models:steady]" in tests and "test_bot.py::test_refund[1-py:models:shaky]" \
        in tests
    # Both models gone: every reply comes back from the recordings, each model's own.
    models.makepyfile(models=MODELS.replace("def steady(", "def _steady(").replace("def shaky(", "def _shaky(")
                      + "\nsteady = shaky = broken\n")
    replay = run(*BOTH, "--llm-record-mode=none", "--llm-report-json", "r.json")
    replay.assert_outcomes(passed=18, failed=4)
    report = json.loads((models.path / "r.json").read_text())
    assert report["totals"]["regressed"] == 0 and report["totals"]["unchanged"] > 0
    assert {r["metric"]: r["verdict"] for r in report["models"]}["no_refusal"] == "worse"


def test_a_missing_recording_says_how_to_record_it_with_the_models(models):
    models.makeini(f"[pytest]\nllm_models = {STEADY} {SHAKY}\n")
    models.makepyfile(test_rec="def test_r(llm):\n    llm('How long? case 1')\n")
    result = models.runpytest("-p", "no:xdist", "--llm-record-mode=none", "--llm-model", STEADY, "--llm-model",
                              "py:models:broken")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([f"*pytest 'test_rec.py::test_r[[]{STEADY}]' --llm-model {STEADY} --llm-model "
                                 "py:models:broken --llm-record-mode=new_episodes*"])
    hint = models.runpytest("-p", "no:xdist", "--llm-record-mode=none")  # the ini's models: the id alone works
    hint.stdout.fnmatch_lines([f"*pytest 'test_rec.py::test_r[[]{SHAKY}]' --llm-record-mode=new_episodes*"])
    record = models.runpytest("-p", "no:xdist", f"test_rec.py::test_r[{SHAKY}]", "--llm-record-mode=new_episodes")
    record.assert_outcomes(passed=1)  # the command it gives works


def test_a_replay_needs_no_model_installed(models):
    models.makepyfile(test_bot=SUITE)
    models.runpytest("-p", "no:xdist", *BOTH, "--llm-record-mode=once").assert_outcomes(passed=18, failed=4)
    (models.path / "models.py").unlink()
    replay = models.runpytest("-p", "no:xdist", *BOTH, "--llm-record-mode=none")
    # test_own_model pins steady by its marker: replayed too. Nothing imports models.py.
    replay.assert_outcomes(passed=18, failed=4)
    assert "cannot import" not in replay.stdout.str()


def test_a_secret_in_a_model_spec_never_shows(models, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-TESTSECRET0123456789abcdef")
    models.makepyfile(test_a="def test_a(llm_model_spec):\n    pass\n")
    result = models.runpytest("-p", "no:xdist", "-v", "--llm-model", STEADY, "--llm-model",
                              "openai:sk-proj-TESTSECRET0123456789abcdef", "--llm-report-json", "r.json")
    result.assert_outcomes(passed=2)
    assert "TESTSECRET" not in result.stdout.str() + (models.path / "r.json").read_text()
    result.stdout.fnmatch_lines(["*test_a.py::test_a[[]openai:<redacted*] PASSED*"])


def test_snapshots_are_shared_by_the_models_unless_per_model(run, models):
    models.makepyfile(test_snap='''
        import pytest

        @pytest.mark.parametrize("q", ["a", "b"])
        def test_shared(llm, llm_snapshot, q):
            assert llm(f"How long do refunds take? case {q}") == llm_snapshot

        def test_own(llm, llm_snapshot):
            assert llm("How long do refunds take? case 7") == llm_snapshot(per_model=True)
        ''')
    update = run(*BOTH, "--snapshot-update")
    # The first model records the shared references; the other model's shared asserts neither compare nor
    # write in this run (they compare from the next one), and its per-model snapshot is recorded.
    update.assert_outcomes(passed=6)
    update.stdout.fnmatch_lines(["*llm_snapshot: in a --snapshot-update run, the model matrix records the first "
                                 "model's answers as the shared references*"])
    folder = models.path / "__snapshots__" / "test_snap"
    names = sorted(p.name for p in folder.glob("*.llm.txt"))
    assert names == ["test_shared[a].llm.txt", "test_shared[b].llm.txt"]  # no model in the shared names
    per_model = sorted(p.name for p in folder.glob("*.llm-model"))
    assert len(per_model) == 2 and all(n.startswith("test_own[") for n in per_model)
    assert len(list(folder.iterdir())) == 4
    assert "5 to 7 days" in (folder / "test_shared[a].llm.txt").read_text()  # steady's answer
    compare = run(*BOTH, "--llm-report-json", "r.json")
    compare.assert_outcomes(passed=6)
    assert "snapshots unused" not in compare.stdout.str()
    report = json.loads((models.path / "r.json").read_text())
    row = next(r for r in report["models"] if r["metric"] == "similarity")
    assert row["tests"] == 3 and row["reference_value"] == 1.0  # steady matches its own answers
    again = run(*BOTH, "--snapshot-update")  # a second update keeps every file
    again.assert_outcomes(passed=6)
    assert sorted(p.name for p in folder.iterdir()) == sorted(names + per_model)
    # With one model (no matrix), per_model=True compares with that model's file, the one its copy uses in the
    # matrix; a complete update, where syrupy deletes what no test asserted, leaves the other models' alone.
    before = {p.name: p.read_text() for p in folder.iterdir()}
    one = run("--llm-model", SHAKY, "--snapshot-update")
    one.assert_outcomes(passed=3)
    out = one.stdout.str()
    assert "deleted" not in out and "unused" not in out and "generated" not in out  # all compared, nothing new
    assert {p.name: p.read_text() for p in folder.iterdir()} == before
    plain = run("--llm-model", STEADY)
    plain.assert_outcomes(passed=3)
    assert "unused" not in plain.stdout.str() and "generated" not in plain.stdout.str()
    # A matrix update that no longer names a model deletes that model's per-model file, as syrupy does for any
    # snapshot no test asserts.
    assert any("shaky" in n for n in per_model)
    run(*BOTH[:2], "--llm-model", "py:models:steady2", "--snapshot-update").assert_outcomes(passed=6)
    after = sorted(p.name for p in folder.glob("*.llm-model"))
    assert len(after) == 2 and not any("shaky" in n for n in after) and any("steady2" in n for n in after)


def test_an_update_run_keeps_the_snapshots_of_copies_that_did_not_pass(run, models, monkeypatch):
    # syrupy cannot tie the matrix's snapshot names to test ids: without the plugin's guard, a complete
    # --snapshot-update deleted the references of copies that failed, errored, skipped or were never reached.
    models.makepyfile(flaky='''
        import os

        def reply(messages, **params):
            if os.environ.get("DOWN"):
                raise ConnectionError("the server is down")
            return "Refunds take about a week."
        ''', test_keep='''
        import os
        import pytest

        def test_a(llm, llm_snapshot):
            reply = llm("Refund?")
            assert reply == llm_snapshot(per_model=True)
            assert reply == llm_snapshot

        def test_b(llm, llm_snapshot):
            if os.environ.get("BOOM"):
                raise RuntimeError("boom")
            assert llm("Refund?") == llm_snapshot

        def test_s(llm, llm_snapshot):
            if os.environ.get("SKIP"):
                pytest.skip("not today")
            assert llm("Refund?") == llm_snapshot(per_model=True)
        ''')
    pair = ("--llm-model", STEADY, "--llm-model", "py:flaky:reply")
    run(*pair, "--snapshot-update").assert_outcomes(passed=6)
    folder = models.path / "__snapshots__" / "test_keep"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert len(before) == 6, sorted(before)
    for env in ("DOWN", "BOOM", "SKIP"):
        monkeypatch.setenv(env, "1")
    result = run(*pair, "--snapshot-update")
    result.assert_outcomes(passed=1, failed=3, skipped=2)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # (Files syrupy can tie to a failed test it keeps itself; the rest the plugin puts back, and says so.)
    result.stdout.fnmatch_lines(["llm_snapshot: kept * snapshot files of tests that did not pass in this "
                                 "--snapshot-update run (syrupy's summary counts them as deleted)"])
    stopped = run(*pair, "--snapshot-update", "-x")  # the tests after the first failure never run
    assert stopped.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)  # xdist: interrupted
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    for env in ("DOWN", "BOOM", "SKIP"):
        monkeypatch.delenv(env)
    # Files of a test that passed without asserting them go, as syrupy decides.
    models.makepyfile(test_keep="def test_a(llm, llm_snapshot):\n    assert llm('Refund?') == llm_snapshot\n")
    run(*pair, "--snapshot-update").assert_outcomes(passed=2)
    assert sorted(p.name for p in folder.iterdir()) == ["test_a.llm.txt"]


def test_an_update_run_with_a_path_deletes_what_no_test_asserts_any_more(models, monkeypatch):
    # With a path argument syrupy deletes only the files it can tie to a test that ran: the plugin ties the
    # matrix's shared and per-model files to their copies.
    models.makepyfile(flaky='''
        import os

        def reply(messages, **params):
            if os.environ.get("DOWN"):
                raise ConnectionError("the server is down")
            return "Refunds take about a week."
        ''')
    suite = '''
        def test_one(llm, llm_snapshot):
            assert llm("Refund?") == llm_snapshot

        def test_two(llm, llm_snapshot):
            reply = llm("Refund?")
            assert reply == llm_snapshot
            assert reply == llm_snapshot(per_model=True)
        '''
    models.makepyfile(test_path=suite)
    pair = ("--llm-model", STEADY, "--llm-model", "py:flaky:reply")
    models.runpytest("-p", "no:xdist", *pair, "--snapshot-update").assert_outcomes(passed=4)
    folder = models.path / "__snapshots__" / "test_path"
    assert len(list(folder.iterdir())) == 4
    # One copy down: the other copy's per-model file is its own, not kept for the failing copy.
    models.makepyfile(test_path=suite.replace("test_one", "test_uno").replace(
        "            assert reply == llm_snapshot(per_model=True)\n", ""))
    monkeypatch.setenv("DOWN", "1")
    result = models.runpytest("-p", "no:xdist", *pair, "--snapshot-update", "test_path.py")
    result.assert_outcomes(passed=2, failed=2)
    names = sorted(p.name for p in folder.iterdir())
    assert "test_one.llm.txt" not in names and "test_uno.llm.txt" in names  # renamed: the old one goes
    assert "test_two.llm.txt" in names and any("flaky" in n for n in names)  # the failing copy's are kept
    # (A per-model file that no assert of the run's could have written, syrupy alone judges: under a path
    # argument it keeps those of parametrized tests, the matrix's copies included; a bare run deletes them.)
    monkeypatch.delenv("DOWN")
    result = models.runpytest("-p", "no:xdist", *pair, "--snapshot-update")
    result.assert_outcomes(passed=4)
    assert sorted(p.name for p in folder.iterdir()) == ["test_two.llm.txt", "test_uno.llm.txt"]


def test_the_copy_that_runs_records_the_shared_reference(models):
    # A case pinned to the second model, and a copy selected without the first model's, record the shared
    # reference themselves: nothing else would. A pinned case's per_model=True is its one reference.
    models.makepyfile(test_pin='''
        import pytest

        @pytest.mark.parametrize("q", ["a", pytest.param("b", marks=pytest.mark.llm(model="py:models:shaky"))])
        def test_case(llm, llm_snapshot, q):
            reply = llm(f"How long do refunds take? case {q}")
            assert reply == llm_snapshot
            assert reply == llm_snapshot(per_model=True)
        ''')
    models.runpytest("-p", "no:xdist", *BOTH, "--snapshot-update").assert_outcomes(passed=3, skipped=1)
    folder = models.path / "__snapshots__" / "test_pin"
    names = sorted(p.name for p in folder.iterdir())
    assert "test_case[b].llm.txt" in names and "test_case[b].1.llm.txt" in names, names
    assert "about a week" in (folder / "test_case[b].llm.txt").read_text()  # shaky's answer: it runs the case
    assert not any(n.startswith("test_case[b-") for n in names)
    models.runpytest("-p", "no:xdist", *BOTH).assert_outcomes(passed=3, skipped=1)
    one = models.runpytest("-p", "no:xdist", "--llm-model", SHAKY, "-k", "b")  # the same files with one model
    one.assert_outcomes(passed=1)
    assert "generated" not in one.stdout.str()

    models.makepyfile(test_new="def test_new(llm, llm_snapshot):\n    assert llm('Refund? case 9') == llm_snapshot\n")
    only = models.runpytest("-p", "no:xdist", *BOTH, "--snapshot-update", f"test_new.py::test_new[{SHAKY}]")
    only.assert_outcomes(passed=1)
    assert (models.path / "__snapshots__" / "test_new" / "test_new.llm.txt").is_file()  # the copy that ran wrote it


def test_switching_between_one_model_and_the_matrix_keeps_the_baseline(models):
    models.makepyfile(test_b='''
        def test_b(llm, llm_metrics):
            llm_metrics.record("score", len(llm("Refund? case 1").text))
        ''')
    models.runpytest("-p", "no:xdist", *BOTH, "--llm-baseline-update").assert_outcomes(passed=2)
    one = models.runpytest("-p", "no:xdist", "--llm-model", STEADY, "--llm-baseline-update")
    one.assert_outcomes(passed=1)
    assert "vanished" not in one.stdout.str()
    tests = json.loads((models.path / ".llmmetrics" / "baseline.json").read_text())["tests"]
    assert set(tests) == {"test_b.py::test_b", f"test_b.py::test_b[{STEADY}]", f"test_b.py::test_b[{SHAKY}]"}
    again = models.runpytest("-p", "no:xdist", *BOTH, "--llm-baseline-update")
    again.assert_outcomes(passed=2)
    assert "vanished" not in again.stdout.str()
    assert len(json.loads((models.path / ".llmmetrics" / "baseline.json").read_text())["tests"]) == 3
    # A test that is gone from the collection still goes, with its matrix copies.
    models.makepyfile(test_b="def test_other(llm_metrics):\n    llm_metrics.record('score', 1.0)\n")
    gone = models.runpytest("-p", "no:xdist", *BOTH, "--llm-baseline-update")
    gone.stdout.fnmatch_lines(["*3 vanished tests removed*"])


def test_a_later_per_model_snapshot_of_another_model_is_recorded_in_the_update_run(models):
    models.makepyfile(test_snap='''
        def test_two(llm, llm_snapshot):
            reply = llm("How long do refunds take? case 3")
            assert reply == llm_snapshot
            assert reply.text.upper() == llm_snapshot(per_model=True)
        ''')
    models.runpytest("-p", "no:xdist", *BOTH, "--snapshot-update").assert_outcomes(passed=2)
    assert len(list((models.path / "__snapshots__" / "test_snap").glob("test_two[[]*.1.llm-model"))) == 2
    models.runpytest("-p", "no:xdist", *BOTH).assert_outcomes(passed=2)


def test_model_none_on_a_closer_marker_unpins_the_test(models):
    # The closest marker wins per argument: model=None under a module that pins a model runs against the run's
    # models (once per model in the matrix), like a test that no marker pins.
    models.makepyfile(test_pin='''
        import pytest

        pytestmark = pytest.mark.llm(model="py:models:shaky")

        def test_pinned(llm):
            assert llm.name == "py:models:shaky"

        @pytest.mark.llm(model=None)
        def test_unpinned(llm, llm_model_spec):
            assert llm.name == llm_model_spec
        ''')
    result = models.runpytest("-p", "no:xdist", "-v", *BOTH)
    result.assert_outcomes(passed=3)
    assert ids(result) == {"test_pin.py::test_pinned", f"test_pin.py::test_unpinned[{STEADY}]",
                           f"test_pin.py::test_unpinned[{SHAKY}]"}
    one = models.runpytest("-p", "no:xdist", "-v", "--llm-model", STEADY)
    one.assert_outcomes(passed=2)


def test_a_case_that_names_its_model_runs_once_as_that_models_copy(models):
    models.makepyfile(test_a='''
        import pytest

        @pytest.mark.parametrize("q", [
            "x",
            pytest.param("y", marks=pytest.mark.llm(model="{SHAKY}")),
            pytest.param("z", marks=pytest.mark.llm(model="py:models:broken")),
        ])
        def test_a(llm, q):
            pass
        '''.replace("{SHAKY}", SHAKY))
    result = models.runpytest("-p", "no:xdist", "-v", "-rs", *BOTH, "--llm-report-json", "r.json")
    result.assert_outcomes(passed=4, skipped=2)
    assert {k: v for k, v in outcomes(result).items() if v == "PASSED"} == {
        f"test_a.py::test_a[x-{STEADY}]": "PASSED", f"test_a.py::test_a[x-{SHAKY}]": "PASSED",
        f"test_a.py::test_a[y-{SHAKY}]": "PASSED",  # its own model's copy
        f"test_a.py::test_a[z-{STEADY}]": "PASSED",  # a model outside the matrix: the first model's copy
    }
    result.stdout.fnmatch_lines_random([
        f"*this case names its model ({SHAKY}) in its marks: it runs once, as its [[]{SHAKY}] copy*",
        f"*this case names its model (py:models:broken) in its marks: it runs once, as its [[]{STEADY}] copy*"])
    # The z case ran another model: it counts in no model's column.
    totals = {t["model"]: t["tests"] for t in json.loads((models.path / "r.json").read_text())["model_totals"]}
    assert totals == {STEADY: 1, SHAKY: 2}


def test_an_llm_model_override_follows_the_matrix_when_it_takes_the_spec(models):
    models.makeconftest('''
        import pytest

        @pytest.fixture
        def llm_model(llm_model_spec):
            def answer(messages, **params):
                return f"{llm_model_spec} says hi"
            return answer
        ''')
    models.makepyfile(test_a='''
        def test_a(llm, llm_model_spec):
            assert llm("hi").text == f"{llm_model_spec} says hi"
        ''', test_b='''
        import pytest

        @pytest.fixture
        def llm_model():
            return lambda messages, **params: "fixed"

        def test_b(llm):
            assert llm("hi").text == "fixed"
        ''')
    result = models.runpytest("-p", "no:xdist", "-v", *BOTH)
    result.assert_outcomes(passed=3)
    assert ids(result) == {f"test_a.py::test_a[{STEADY}]", f"test_a.py::test_a[{SHAKY}]", "test_b.py::test_b"}


def test_async_tests_run_once_per_model(models):
    models.makepyfile(test_a='''
        import pytest

        @pytest.mark.asyncio
        async def test_a(allm, llm_model_spec):
            assert (await allm("How long? case 1")).text.startswith("Refunds")
        ''')
    result = models.runpytest("-p", "no:xdist", "-v", *BOTH)
    result.assert_outcomes(passed=2)
    assert ids(result) == {f"test_a.py::test_a[{STEADY}]", f"test_a.py::test_a[{SHAKY}]"}


def test_dist_loadgroup_keeps_each_model_on_one_worker(models):
    models.makepyfile(test_bot=SUITE)
    result = models.runpytest("-n", "2", "--dist", "loadgroup", "-v", *BOTH, "--llm-baseline-update")
    result.assert_outcomes(passed=18, failed=4)
    workers = defaultdict(set)
    for line in result.outlines:
        found = re.match(r"\[(gw\d)\] .*(PASSED|FAILED) (\S+)", line)
        if found:
            workers[model_in(found.group(3), (STEADY, SHAKY))].add(found.group(1))
    assert len(workers[STEADY]) == 1 and len(workers[SHAKY]) == 1 and workers[STEADY] != workers[SHAKY]
    baseline = json.loads((models.path / ".llmmetrics" / "baseline.json").read_text())
    assert not any("@" in test for test in baseline.get("tests", baseline))


@needs_local
def test_two_real_models_local_and_the_llama_cpp_server(bot, llama_server):
    """The embedded model in-process and the same GGUF served by llama.cpp over HTTP, as two models."""
    bot.makeini(f"[pytest]\nllm_models = local openai:smollm2\nllm_base_url = {llama_server.base_url}\n")
    bot.makepyfile(test_real='''
        import pytest
        from pytest_llmmetrics import metrics

        @pytest.mark.parametrize("country", ["France", "Italy", "Spain"])
        @pytest.mark.llm(max_tokens=24, seed=0)
        def test_capital(llm, llm_metrics, country):
            llm_metrics.expect(llm(f"What is the capital of {country}? One word."), metrics.char_count(max=400),
                               metrics.no_refusal())
        ''')
    result = bot.runpytest("-n", "2", "--dist", "loadgroup", "--llm-report-json", "r.json", "--llm-timeout", "120")
    result.assert_outcomes(passed=6)
    report = json.loads((bot.path / "r.json").read_text())
    assert {(r["model"], r["against"], r["tests"]) for r in report["models"]} == {("openai:smollm2", "local", 3)}
    totals = {t["model"]: t for t in report["model_totals"]}
    for spec in ("local", "openai:smollm2"):
        assert totals[spec]["calls"] == 3 and totals[spec]["completion_tokens"] > 0 and totals[spec]["latency_s"] > 0
    assert totals["local"]["cost_usd"] == 0.0  # the embedded model is free; the server has no price set
    assert totals["openai:smollm2"]["cost_usd"] is None


# --- units ------------------------------------------------------------------------------------------------------

class _Option:
    def __init__(self, **values):
        self.__dict__.update(values)


class _Config:
    def __init__(self, **values):
        self.option = _Option(**values)


@pytest.mark.parametrize(("nodeid", "expected"), [
    ("t.py::test_a[x-local]@local", "t.py::test_a[x-local]"),
    ("t.py::test_a@db", "t.py::test_a"),
    ("t.py::test_a[me@example.com]", "t.py::test_a[me@example.com]"),  # an @ inside the parameters stays
    ("t.py::test_a[a::b@c]@g", "t.py::test_a[a::b@c]"),
    ("t.py::TestX::test_a", "t.py::TestX::test_a"),
])
def test_plain_nodeid_drops_only_xdists_group_suffix(nodeid, expected):
    assert plain_nodeid(nodeid, _Config(loadgroup=True)) == expected  # type: ignore[arg-type]
    assert plain_nodeid(nodeid, _Config(dist="load")) == nodeid  # type: ignore[arg-type]


def test_model_in_prefers_the_longest_spec():
    specs = ("mini", "openai:gpt-4o-mini", "local")
    assert model_in("t.py::test[openai:gpt-4o-mini]", specs) == "openai:gpt-4o-mini"
    assert model_in("t.py::test[3-local]", specs) == "local"
    assert model_in("t.py::test[3-localx]", specs) is None
    assert model_in("t.py::test", specs) is None


def _metric(mean: float, n: int = 1) -> dict:
    return {"mean": mean, "n": n, "kind": "score", "higher_is_better": True, "scale": "numeric", "std": 0.0,
            "passed": True, "threshold": None, "track": "utility", "group": None}


def _simulate(effect: float, runs: int, tests: int, seed: int) -> dict[str, int]:
    """Two models over `tests` tests whose difficulty varies a lot (sd 0.15) and whose scores are noisy (sd 0.05);
    the second is better by `effect`. Returns how often each verdict came out."""
    rng = random.Random(seed)
    counts: dict[str, int] = defaultdict(int)
    for _ in range(runs):
        metrics, runs_map = {}, {}
        for t in range(tests):
            difficulty = rng.gauss(0.6, 0.15)
            for spec, shift in (("a", 0.0), ("b", effect)):
                nodeid = f"t.py::test[{t}-{spec}]"
                metrics[nodeid] = {"fingerprint": {}, "metrics": {"score": _metric(difficulty + shift
                                                                                    + rng.gauss(0, 0.05))}}
                runs_map[nodeid] = (spec, f"t.py::test[{t}]")
        rows = compare_models(metrics, runs_map, ["a", "b"])
        counts[rows[0].verdict] += 1
    return counts


def test_simulated_model_comparisons_rarely_call_equal_models_different_and_find_real_gaps():
    """Seeded: 400 comparisons of equal models over 30 tests; 200 with a 0.05 gap (the README gives the figures)."""
    equal = _simulate(0.0, 400, 30, seed=7)
    # Each way is a one-sided test at 3.5 %: 14 of 400 each way in this simulation.
    assert equal["better"] <= 0.05 * 400 and equal["worse"] <= 0.05 * 400, equal
    gap = _simulate(0.05, 200, 30, seed=8)
    assert gap["better"] >= 0.9 * 200 and gap["worse"] == 0, gap  # paired by test, the difficulty spread cancels
    worse = _simulate(-0.05, 200, 30, seed=9)
    assert worse["worse"] >= 0.9 * 200 and worse["better"] == 0, worse


def test_the_guard_ties_each_file_to_the_copy_it_belongs_to():
    from pytest_llmmetrics.semantic.guard import snapshot_names
    from pytest_llmmetrics.semantic.snapshot import file_stem, owns

    shared, per_model = snapshot_names("t.py::TestA::test_sel[x-py:models:shaky]", [STEADY, SHAKY], {})
    assert shared == ["TestA.test_sel[x]"] and per_model == ["TestA.test_sel[x-py:models:shaky]"]
    mine = [file_stem(n) for n in per_model]
    assert owns(file_stem("TestA.test_sel[x-py:models:shaky]", ".1"), mine)
    assert not owns(file_stem("TestA.test_sel[x-py:models:steady]", ".1"), mine)  # the other copy's file
    assert owns("TestA.test_sel[x].2", [file_stem(n) for n in shared])
    assert snapshot_names("t.py::test_one", [STEADY], {}) == (["test_one"], [f"test_one[{STEADY}]"])
