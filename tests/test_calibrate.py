"""``llmmetrics calibrate``: thresholds from labelled replies, checked on data with a known answer."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dedent

from pytest_llmmetrics import calibrate as cal

ROOT = Path(__file__).resolve().parent.parent


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_llmmetrics", "calibrate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- the statistics, on data with a known answer -------------------------------------------------------

def test_separable_labels_give_a_threshold_between_the_groups():
    values = [0.2, 0.35, 0.41, 0.77, 0.8, 0.93]
    labels = [False, False, False, True, True, True]
    best = cal.best(values, labels, higher_is_better=True)
    assert best.threshold == 0.6  # the roundest number in (0.41, 0.77], nearest the middle
    assert (best.accuracy, best.false_pass, best.false_fail, best.kappa) == (1.0, 0.0, 0.0, 1.0)


def test_overlapping_labels_prefer_fewer_false_passes_on_a_tie():
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    labels = [False, False, True, False, True, True]
    # >= 0.3 and >= 0.5 both get 5 of 6 right with kappa 2/3; 0.5 lets no unacceptable reply pass.
    best = cal.best(values, labels, higher_is_better=True)
    assert best.threshold == 0.5 and best.correct == 5 and best.kappa == pytest.approx(2 / 3)
    assert (best.false_passes, best.false_fails) == (0, 1)
    loose = cal.cut(values, labels, 0.3, True)
    assert (loose.correct, loose.false_passes, loose.kappa) == (5, 1, pytest.approx(2 / 3))


def test_lower_is_better_metrics_pass_at_or_below_the_threshold():
    words = [12, 18, 25, 40, 55, 90]
    labels = [True, True, True, False, False, False]
    best = cal.best(words, labels, higher_is_better=False)
    assert best.threshold == 30 and best.accuracy == 1.0


def test_a_false_pass_limit_trades_false_fails_for_it():
    values = [0.1, 0.3, 0.55, 0.6, 0.65, 0.7, 0.9, 0.95]
    labels = [False, False, True, True, True, False, True, True]
    best = cal.best(values, labels, True)
    strict = cal.best(values, labels, True, max_false_pass=0.0)
    assert (best.threshold, best.correct, best.false_passes, best.false_fails) == (0.4, 7, 1, 0)
    assert (strict.threshold, strict.correct, strict.false_passes, strict.false_fails) == (0.8, 5, 0, 3)
    assert cal.best([0.5, 0.5], [True, False], True, max_false_pass=0.0) is None  # only "nothing passes" would do


@pytest.mark.parametrize(("predicted", "labels", "expected"), [
    ([True, True, False, False], [True, True, False, False], 1.0),
    ([True, False, True, False], [True, True, False, False], 0.0),
    ([False, False, True, True], [True, True, False, False], -1.0),
    ([True, True, True, False], [True, True, False, False], 0.5),
])
def test_kappa_of_known_tables(predicted, labels, expected):
    assert cal.kappa(predicted, labels) == pytest.approx(expected)


def test_round_thresholds_for_large_values_are_quick():
    # Costs and counts reach 1e15 (values.LIMIT): only ~10 multiples per power of ten are tried.
    assert cal.round_between(1e14, 9e14, include_high=True) == 5e14
    assert cal.round_between(123_456_789.0, 123_456_789.6, include_high=True) == 123_456_789.3


def test_roundest_thresholds():
    assert cal.round_between(0.41, 0.77, include_high=True) == 0.6
    assert cal.round_between(0.5, 0.75, include_high=True) == 0.6
    assert cal.round_between(0.5, 0.55, include_high=True) == 0.52
    assert cal.round_between(0.712, 0.7131, include_high=True) == 0.713
    assert cal.round_between(25, 40, include_high=False) == 30
    assert cal.round_between(3, 4, include_high=False) == 3


def test_simulated_labels_recover_the_rater_threshold():
    """Seeded simulation: raters accept replies whose latent quality is above 0.7; the metric sees the quality
    with noise (sd 0.08). Over 200 files of 100 rows the chosen threshold lands near 0.7. The kappa interval
    describes the labelled rows at the chosen threshold: since the threshold was chosen on those same rows,
    it holds the kappa the threshold reaches on new replies in fewer than 95 % of files (README figure)."""
    rng = random.Random(7)

    def sample(n):
        quality = [rng.random() for _ in range(n)]
        return [q + rng.gauss(0, 0.08) for q in quality], [q > 0.7 for q in quality]

    big_values, big_labels = sample(10_000)
    thresholds, covered = [], 0
    for _ in range(200):
        values, labels = sample(100)
        best = cal.best(values, labels, True)
        thresholds.append(best.threshold)
        true_kappa = cal.cut(big_values, big_labels, best.threshold, True).kappa
        low, high = cal.kappa_interval(values, labels, best.threshold, True, resamples=400)
        covered += low <= true_kappa <= high
    thresholds.sort()
    assert 0.66 <= thresholds[100] <= 0.74  # the median threshold
    assert 0.7 <= covered / 200 <= 0.95, covered


def test_a_metric_unrelated_to_the_labels_warns():
    rng = random.Random(3)
    values = [rng.random() for _ in range(60)]
    labels = [rng.random() < 0.5 for _ in range(60)]
    best = cal.best(values, labels, True)
    low, high = cal.kappa_interval(values, labels, best.threshold, True)
    report = cal.Report("similarity", "x.jsonl", 60, sum(labels), 60 - sum(labels), True, best, low, high, "p")
    assert best.kappa < 0.4 and "do not trust it as a gate" in report.text()
    assert low < 0.1  # chance agreement is inside the interval


# --- the command ----------------------------------------------------------------------------------------

def test_the_examples_similarity_threshold_comes_from_their_labels():
    """examples/pytest.ini's llm_similarity_threshold is what calibrating on examples/calibration/ gives."""
    proc = cli(ROOT, "examples/calibration/similarity.jsonl", "--metric", "similarity", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["rows"] == 32 and result["acceptable"] + result["unacceptable"] == 32
    assert result["paste"] == f"llm_similarity_threshold = {result['threshold']:g}"
    assert f"\n{result['paste']}\n" in (ROOT / "examples" / "pytest.ini").read_text()
    assert result["kappa_low"] <= result["kappa"] <= result["kappa_high"]
    assert set(result) >= {"threshold", "kappa", "kappa_low", "kappa_high", "accuracy", "rows", "false_pass",
                           "false_fail", "warning"}


def test_the_readme_shows_the_real_output():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- calibrate-examples -->\n```console\n", 1)[1].split("```", 1)[0]
    command, *expected = block.rstrip("\n").split("\n")
    assert command.startswith("$ python -m pytest_llmmetrics calibrate ")
    proc = subprocess.run([sys.executable, *command[2:].split()[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip("\n").split("\n") == expected


JUDGE = '''
import json, re

def grade(messages, **params):
    reply = messages[1]["content"].split("<reply>\\n", 1)[1].rsplit("\\n</reply>", 1)[0]
    if "RAMBLE" in reply:
        return "It is good."
    return json.dumps({"score": int(re.search(r"SCORE=(\\d)", reply).group(1)), "reason": "scripted"})
'''


def test_a_judge_calibrated_recorded_and_replayed_without_the_judge(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_judge_model = py:judge:grade\n")
    (tmp_path / "judge.py").write_text(JUDGE)
    rows = [{"reply": f"SCORE={s} text {i}", "criteria": "Polite", "label": s >= 4, "prompt": "Hi"}
            for i, s in enumerate([1, 2, 2, 3, 4, 4, 5, 5, 3, 4])]
    rows[8]["label"] = True  # a score of 3 that the rater found fine: the judge disagrees once
    rows.append({"reply": "RAMBLE", "criteria": "Polite", "label": True})
    labels = write_rows(tmp_path / "labels.jsonl", rows)
    first = cli(tmp_path, "labels.jsonl", "--metric", "judge", "--llm-record-mode", "new_episodes")
    assert first.returncode == 0, first.stderr
    assert "calibrated judge on labels.jsonl: 10 rows (6 acceptable, 4 not)" in first.stdout
    assert "  threshold    >= 0.6\n  accuracy     90.0% (9 of 10)" in first.stdout
    assert "  paste        metrics.judge(criteria, min=0.6)" in first.stdout
    assert "not measured (left out): line 11: judge reply could not be read" in first.stdout
    assert "__recordings__/labels.llm.json: 12 replies recorded" in first.stderr
    assert (tmp_path / "__recordings__" / "labels.llm.json").is_file()
    (tmp_path / "judge.py").unlink()
    again = cli(tmp_path, str(labels), "--metric", "judge", "--llm-record-mode", "none")
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n", 1)[1] == first.stdout.split("\n", 1)[1]
    assert cli(tmp_path, "labels.jsonl", "--metric", "judge").returncode == 1  # live: the judge is gone


def test_a_metric_from_conftest(tmp_path):
    (tmp_path / "conftest.py").write_text(dedent("""
        import pytest_llmmetrics

        @pytest_llmmetrics.metric(max=2, higher_is_better=False)
        def exclamations(reply) -> int:
            return reply.text.count("!")
        """))
    rows = [{"reply": "Hi" + "!" * n, "label": n <= 1} for n in (0, 0, 1, 1, 2, 3, 4, 6)]
    write_rows(tmp_path / "labels.jsonl", rows)
    proc = cli(tmp_path, "labels.jsonl", "--metric", "exclamations", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["direction"], result["threshold"], result["accuracy"]) == ("lower", 1, 1.0)
    assert result["paste"] == "llm_metrics.check('exclamations', max=1)"


@pytest.mark.parametrize(("lines", "args", "message"), [
    (None, [], "missing.jsonl: no such file"),
    (['{"reply": "a", "label": true}', "", "{nope}"], [], "labels.jsonl:3: not JSON"),
    (['{"reply": "a"}'], [], "labels.jsonl:1: 'label' must be true (acceptable) or false (not), got None"),
    (['{"reply": "a", "label": "yes"}'], [], "labels.jsonl:1: 'label' must be true"),
    (['{"reply": "a", "label": 1}'], [], "labels.jsonl:1: 'label' must be true"),
    (['{"reply": 5, "label": true}'], [], "labels.jsonl:1: 'reply' must be the reply's text"),
    (['{"reply": "a", "label": true, "refrence": "b"}'], [], "labels.jsonl:1: unknown field(s) 'refrence'"),
    (['{"reply": "a", "label": true, "label": false}'], [], "labels.jsonl:1: the field 'label' is given twice"),
    (['[1, 2]'], [], "labels.jsonl:1: each line must be a JSON object"),
    (['{"reply": "a", "label": true}', '{"reply": "b", "label": true}'], [],
     "every one of its 2 replies is labelled acceptable"),
    (['{"reply": "a", "label": true}'], ["--metric", "similarity"], "labels.jsonl:1: 'reference' must be the "
                                                                    "reference answer"),
    (['{"reply": "a", "label": true}', '{"reply": "b", "label": false}'], ["--metric", "wordcount"],
     "unknown metric 'wordcount'"),
    (['{"reply": "a", "label": true}', '{"reply": "b", "label": false}'], ["--metric", "word_count"],
     "metric 'word_count' has no direction"),
    (['{"reply": "a", "label": true}', '{"reply": "b", "label": false}'], ["--max-false-pass", "5"],
     "--max-false-pass must be >= 0 and <= 1, got 5.0, e.g. 0.05"),
    (['{"reply": "a", "label": true}', '{"reply": "b", "label": false}'], ["--llm-judge-model", "gpt"],
     "--llm-judge-model / llm_judge_model: unknown model spec 'gpt'"),
])
def test_bad_input_is_an_error_naming_the_file_and_line(tmp_path, lines, args, message):
    name = "missing.jsonl" if lines is None else "labels.jsonl"
    if lines is not None:
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    metric = [] if "--metric" in args else ["--metric", "word_count" if "--max-false-pass" in args else "no_pii"]
    proc = cli(tmp_path, name, *metric, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_secrets_in_errors_are_redacted(tmp_path, monkeypatch):
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz123456"
    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_judge_model = py:judge:grade\n")
    (tmp_path / "judge.py").write_text(f"def grade(messages, **params):\n    raise RuntimeError('key {key}')\n")
    write_rows(tmp_path / "labels.jsonl", [{"reply": "a", "criteria": "c", "label": True},
                                           {"reply": "b", "criteria": "c", "label": False}])
    proc = cli(tmp_path, "labels.jsonl", "--metric", "judge")
    assert proc.returncode == 1
    assert "RuntimeError" in proc.stderr and key not in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "conftest.py").write_text(f"raise RuntimeError('token ghp_{'a' * 36}')\n")
    proc = cli(tmp_path, "labels.jsonl", "--metric", "judge")
    assert proc.returncode == 2 and "conftest.py: importing it failed: RuntimeError" in proc.stderr
    assert "ghp_" + "a" * 36 not in proc.stderr


def test_rows_whose_judge_call_fails_are_left_out(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nllm_judge_model = py:judge:grade\n")
    (tmp_path / "judge.py").write_text(dedent("""
        import json
        def grade(messages, **params):
            if "BOOM" in messages[1]["content"]:
                raise RuntimeError("the judge fell over")
            return json.dumps({"score": 5 if "good" in messages[1]["content"] else 1, "reason": "r"})
        """))
    write_rows(tmp_path / "labels.jsonl", [{"reply": "good", "criteria": "c", "label": True},
                                           {"reply": "bad", "criteria": "c", "label": False},
                                           {"reply": "BOOM", "criteria": "c", "label": True}])
    proc = cli(tmp_path, "labels.jsonl", "--metric", "judge")
    assert proc.returncode == 1 and "RuntimeError: the judge fell over" in proc.stderr  # a bug in the judge: stop
    (tmp_path / "judge.py").write_text(dedent("""
        import json, time
        def grade(messages, **params):
            if "BOOM" in messages[1]["content"]:
                time.sleep(60)  # given up on after 2 s; the command does not wait for it
            return json.dumps({"score": 5 if "good" in messages[1]["content"] else 1, "reason": "r"})
        """))
    proc = cli(tmp_path, "labels.jsonl", "--metric", "judge", "--llm-timeout", "2")
    assert proc.returncode == 0, proc.stderr
    assert "2 rows (1 acceptable, 1 not)" in proc.stdout
    assert "not measured (left out): line 3: model py:judge:grade gave no answer within 2 s" in proc.stdout


def test_fixed_bound_checks_and_directions(tmp_path):
    write_rows(tmp_path / "pii.jsonl", [{"reply": "mail me at a@b.example", "label": False},
                                        {"reply": "hello", "label": True}])
    result = json.loads(cli(tmp_path, "pii.jsonl", "--metric", "no_pii", "--json").stdout)
    assert result["paste"].startswith("no_pii has a fixed bound (it takes no max=)")
    rows = [{"reply": "a b c", "label": True, "kwargs": {"max": 5}}, {"reply": "a b c d e f g", "label": False}]
    write_rows(tmp_path / "words.jsonl", rows)
    proc = cli(tmp_path, "words.jsonl", "--metric", "word_count")
    assert proc.returncode == 0 and "threshold    <= 5" in proc.stdout  # rows without bounds follow the others
    rows[1]["kwargs"] = {"min": 2}
    write_rows(tmp_path / "words.jsonl", rows)
    proc = cli(tmp_path, "words.jsonl", "--metric", "word_count")
    assert proc.returncode == 2 and "the rows disagree on the metric's direction" in proc.stderr
    write_rows(tmp_path / "plain.jsonl", [{"reply": "a b c", "label": True}, {"reply": "a b c d e f g", "label": False}])
    proc = cli(tmp_path, "plain.jsonl", "--metric", "word_count", "--direction", "lower", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["paste"] == "metrics.word_count(max=5)"


def test_metrics_from_the_testpaths_conftest_and_a_bom(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(dedent("""
        import pytest_llmmetrics

        @pytest_llmmetrics.metric(min=0.5)
        def shouting(reply) -> float:
            letters = [c for c in reply.text if c.isalpha()]
            return sum(c.isupper() for c in letters) / len(letters)
        """))
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "l.jsonl").write_bytes(
        b'\xef\xbb\xbf{"reply": "HELLO THERE", "label": true}\n{"reply": "hello there", "label": false}\n'
        b'{"reply": "HELLO there", "label": true}\n')
    proc = cli(tmp_path, "calibration/l.jsonl", "--metric", "shouting", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["threshold"] == 0.2
    proc = cli(tmp_path, "calibration/l.jsonl", "--metric", "whispering")
    assert "unknown metric 'whispering'" in proc.stderr and "tests/conftest.py" in proc.stderr


def test_the_lowest_threshold_reads_well():
    assert cal.candidates([0.415481, 0.9], True)[0] == 0.4
    assert cal.candidates([12.0, 31.7], False)[-1] == 32  # every value passes at <= 32
