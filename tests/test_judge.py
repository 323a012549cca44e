"""metrics.judge: a model grades replies; scripted py: judges for the rules, the real llama.cpp server for the wire."""

from __future__ import annotations

import json

import pytest
from conftest import dedent
from hypothesis import given
from hypothesis import strategies as st
from servers import FaultServer

from pytest_llmmetrics import metrics
from pytest_llmmetrics.checks import judge as judging
from pytest_llmmetrics.errors import ConfigError

# A scripted judge: the reply it grades says what it answers (a fake is fine: these are the rules;
# the real judge models are tested below and in the providers' tests).
JUDGE = '''
import json, re

FORMATS = []

def grade(messages, response_format=None, **params):
    FORMATS.append(response_format)
    reply = messages[1]["content"].split("<reply>\\n", 1)[1].rsplit("\\n</reply>", 1)[0]
    asked_again = len(messages) > 2
    if "RAMBLE-ONCE" in reply and not asked_again:
        return "Well, I would say this reply is quite good overall."
    if "RAMBLE" in reply and "RAMBLE-ONCE" not in reply:
        return "PASS. I think it is fine"
    if "TWICE" in reply:
        return '{"score": 5, "reason": "a"} {"score": 1, "reason": "b"}'
    if "SEES-SYSTEM" in messages[1]["content"]:  # asked in the conversation
        seen = "[system] You are Teapot" in messages[1]["content"]
        return json.dumps({"score": 5 if seen else 1, "reason": "saw the system prompt" if seen else "no system"})
    found = re.search(r"SCORE=(\\d+)", reply)
    score = int(found.group(1)) if found else 3
    return json.dumps({"score": score, "reason": f"scripted {score}"})


def lenient(messages, **params):
    return '{"score": 4, "reason": "Good enough."}'
'''


def lines(*patterns: str) -> list[str]:
    """fnmatch patterns with ``[`` taken literally (metric names have brackets)."""
    return [p.replace("[", "[[]") for p in patterns]


@pytest.fixture
def judged(bot: pytest.Pytester) -> pytest.Pytester:
    bot.makepyfile(judge=JUDGE)
    bot.makeini("[pytest]\nllm_model = py:bot:reply\nllm_judge_model = py:judge:grade\n")
    return bot


# --- reading a judge's answer -----------------------------------------------------------------

@pytest.mark.parametrize(("answer", "score", "reason"), [
    ('{"score": 4, "reason": "Polite and correct."}', 4, "Polite and correct."),
    ('```json\n{"score": 5, "reason": "ok"}\n```', 5, "ok"),
    ('Here is my grade: {"score": 2, "reason": "Rude."} Hope that helps.', 2, "Rude."),
    ('{"score": "3", "reason": "so-so"}', 3, "so-so"),
    ('{"score": 1.0}', 1, ""),
    ('{"reason": "x", "score": 5, "extra": [1, {"a": 2}]}', 5, "x"),
])
def test_readable_answers(answer, score, reason):
    judgement, why = judging.read(answer, 5)
    assert why == "" and judgement is not None
    assert (judgement.score, judgement.reason) == (score, reason)


@pytest.mark.parametrize(("answer", "why"), [
    ("PASS", "no JSON object with a score"),
    ("The reply deserves a 5.", "no JSON object with a score"),
    ('{"reason": "good"}', "no JSON object with a score"),
    ('{"score": 6, "reason": "great"}', "score 6 is not an integer from 1 to 5"),
    ('{"score": 0}', "score 0 is not an integer from 1 to 5"),
    ('{"score": 4.5}', "score 4.5 is not an integer from 1 to 5"),
    ('{"score": true}', "score True is not an integer from 1 to 5"),
    ('{"score": "high"}', "score 'high' is not an integer from 1 to 5"),
    ('{"score": 5} {"score": 1}', "2 JSON objects with a score"),
    ('{"score": 5, "reason": "cut off', "no JSON object with a score"),
])
def test_unreadable_answers_are_never_a_score(answer, why):
    judgement, said = judging.read(answer, 5)
    assert judgement is None
    assert said.startswith(why)


@given(st.text(alphabet=st.characters(blacklist_characters="{")))
def test_text_without_an_object_is_never_read_as_a_score(text):
    assert judging.read(text, 5)[0] is None


@given(st.integers(1, 10), st.integers(2, 10))
def test_scores_normalise_into_0_to_1(score, scale):
    judgement, _ = judging.read(json.dumps({"score": score, "reason": "r"}), scale)
    if score > scale:
        assert judgement is None
    else:
        assert judgement is not None and 0 <= judging.normalise(judgement.score, scale) <= 1


@pytest.mark.parametrize(("scale", "lowest_passing", "minimum"), [(2, 2, 1.0), (3, 3, 1.0), (4, 3, 2 / 3),
                                                                   (5, 4, 0.75), (10, 6, 5 / 9)])
def test_the_default_threshold_is_the_top_half_of_the_scale(scale, lowest_passing, minimum):
    assert judging.default_min(scale) == pytest.approx(minimum)
    assert judging.normalise(lowest_passing, scale) == pytest.approx(minimum)
    assert judging.normalise(lowest_passing - 1, scale) < minimum


def test_the_check():
    check = metrics.judge("The reply is polite", scale=10)
    assert (check.name, check.kind, check.track, check.min, check.higher_is_better) == (
        "judge[The reply is polite]", "judge", "utility", pytest.approx(5 / 9), True)
    assert metrics.judge("Polite", name="politeness", min=0.5).name == "politeness"
    assert metrics.judge("Polite").in_track("alignment").track == "alignment"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"criteria": ""}, "give the criteria as a non-empty string"),
    ({"criteria": "x", "scale": 1}, "scale=1 must be an int from 2 to 100"),
    ({"criteria": "x", "scale": 5.0}, "scale=5.0 must be an int"),
    ({"criteria": "x", "min": 1.5}, "min must be >= 0 and <= 1, got 1.5"),
    ({"criteria": "x", "model": "gpt-4o"}, "model='gpt-4o': unknown model spec"),
    ({"criteria": "x", "examples": [("good reply", 7)]}, "example 0: the score must be an integer from 1 to 5"),
    ({"criteria": "x", "examples": ["just a reply"]}, "example 0 must be (reply, score)"),
    ({"criteria": "x", "name": " "}, "name=' ' must be a non-empty string"),
    ({"criteria": "x", "model": 42}, "model= is a model spec string"),
    ({"criteria": "x", "examples": "Thanks!"}, "examples= is a list of graded examples"),
    ({"criteria": "x", "examples": [{"reply": "Hi", "score": 4, "why": "ok"}]}, "example 0 has unknown key(s) 'why'"),
])
def test_bad_arguments_say_what_to_write(kwargs, message):
    criteria = kwargs.pop("criteria")
    with pytest.raises(ConfigError, match="judge: " + message.replace("(", r"\(").replace(")", r"\)")):
        metrics.judge(criteria, **kwargs)


def test_no_examples_is_fine():
    assert metrics.judge("Polite", examples=None).name == "judge[Polite]"


def test_a_judge_outside_a_test_says_where_it_works():
    with pytest.raises(ConfigError, match="grades replies within a test: pass it to llm_metrics.expect"):
        metrics.judge("Polite").evaluate("Hello")


def test_the_judge_sees_the_rubric_the_examples_and_the_conversation():
    from pytest_llmmetrics import Response

    reply = Response("Four.", messages=({"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "2+2?"}))
    system, user = judging.request("Correct arithmetic", 5, (("Five.", 1, "Wrong sum."),), reply)
    assert "Criteria: Correct arithmetic" in system["content"] and "from 1" in system["content"]
    assert 'Example 1 reply: Five.\nExample 1 answer: {"score": 1, "reason": "Wrong sum."}' in system["content"]
    assert user["content"] == ("The conversation:\n[system] Be brief.\n[user] 2+2?\n\n"
                               "The assistant's reply to grade:\n<reply>\nFour.\n</reply>")


# --- judged tests ----------------------------------------------------------------------------------

def test_scores_pass_at_the_top_half_and_fail_below(judged):
    judged.makepyfile(test_a=dedent("""
        from pytest_llmmetrics import metrics

        def test_good(llm_metrics):
            llm_metrics.expect("SCORE=4 fine", metrics.judge("Helpful"))

        def test_poor(llm_metrics):
            llm_metrics.expect("SCORE=3 meh", metrics.judge("Helpful"))

        def test_own_threshold(llm_metrics):
            llm_metrics.expect("SCORE=3 meh", metrics.judge("Helpful", min=0.5))
        """))
    result = judged.runpytest("-p", "no:xdist", "--llm-report-json=r.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(lines("*- judge[Helpful] = 0.5, needs >= 0.75",
                                 "*judge: 3 of 5: scripted 3", "*reply: 'SCORE=3 meh'"))
    rows = {r["test"].split("::")[1]: r for r in json.loads((judged.path / "r.json").read_text())["rows"]}
    assert rows["test_good"]["values"]["current"]["mean"] == 0.75
    assert rows["test_poor"]["values"]["current"]["mean"] == 0.5


def test_an_unreadable_judge_is_asked_again_once_then_fails_never_passes(judged):
    judged.makepyfile(test_a=dedent("""
        from pytest_llmmetrics import metrics

        def test_rambles(llm_metrics):
            llm_metrics.expect("RAMBLE", metrics.judge("Helpful", min=0))

        def test_rambles_once(llm_metrics):
            llm_metrics.expect("RAMBLE-ONCE SCORE=5", metrics.judge("Helpful"))

        def test_two_verdicts(llm_metrics):
            llm_metrics.expect("TWICE", metrics.judge("Helpful", min=0), metrics.word_count(max=0))
        """))
    result = judged.runpytest("-p", "no:xdist", "--llm-record-mode=new_episodes")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(lines(
        "*- judge[Helpful] = not measured, needs >= 0",
        "*judge reply could not be read (no JSON object with a score), also when asked again: 'PASS. I think it is fine'",
    ))
    result.stdout.fnmatch_lines(lines("*2 llm checks missed:", "*judge reply could not be read (2 JSON objects with a "
                                 "score; one judgement is one object)*", "*- word_count = 1, needs <= 0"))
    recorded = json.loads((judged.path / "__recordings__" / "test_a.llm.json").read_text())["recordings"]
    asked = {}
    for entry in recorded:
        asked[entry["test"].split("::")[1]] = asked.get(entry["test"].split("::")[1], 0) + 1
    assert asked == {"test_rambles": 2, "test_rambles_once": 2, "test_two_verdicts": 2}
    again = next(e for e in recorded if e["test"].endswith("test_rambles") and len(e["messages"]) == 4)
    assert "could not be read (no JSON object with a score)" in again["messages"][3]["content"]


def test_samples_are_judged_one_by_one_and_the_lowest_scored_shown(judged):
    judged.makepyfile(test_a=dedent("""
        from pytest_llmmetrics import metrics

        SAMPLES = ["SCORE=5 a", "SCORE=2 b", "SCORE=4 c", "SCORE=1 d"]

        def test_mean(llm_metrics):
            llm_metrics.expect(SAMPLES, metrics.judge("Helpful"))

        def test_rate(llm_metrics):
            llm_metrics.expect(SAMPLES, metrics.judge("Helpful"), pass_rate=0.5)

        def test_one_unreadable(llm_metrics):
            llm_metrics.expect(["SCORE=5 a", "RAMBLE", "SCORE=5 b"], metrics.judge("Helpful"))
        """))
    result = judged.runpytest("-p", "no:xdist", "-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(lines("*- judge[Helpful] = mean 0.5 over 4 samples (2 passed), needs mean >= 0.75",
                                 "*sample 3: 0, judge: 1 of 5: scripted 1", "*reply: 'SCORE=1 d'"))
    result.stdout.fnmatch_lines(lines("*- judge[Helpful] = 1 of 3 samples not measured, needs >= 0.75",
                                 "*sample 1: judge reply could not be read*", "*reply: 'RAMBLE'"))


def test_replayed_without_the_judge_model_and_a_new_request_when_the_criteria_change(run, judged):
    test = dedent("""
        import pytest
        from pytest_llmmetrics import metrics

        @pytest.mark.llm(system="You are Teapot & Co.'s assistant.")
        def test_polite(llm, llm_metrics):
            reply = llm("SEES-SYSTEM please")
            llm_metrics.expect(reply, metrics.judge("CRITERIA"))
        """)
    judged.makepyfile(test_a=test.replace("CRITERIA", "Polite"))
    judged.runpytest("-p", "no:xdist", "--llm-record-mode=new_episodes", "--llm-baseline-update").assert_outcomes(
        passed=1)
    (judged.path / "judge.py").unlink()  # the judge model is gone: a replay does not need it
    result = run("--llm-record-mode=none", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(lines("*test_polite*judge[Polite]*1*1*unchanged*"))

    judged.makepyfile(test_a=test.replace("CRITERIA", "Polite and brief"))
    result = run("--llm-record-mode=none")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(lines("*no recorded reply for this request in __recordings__*test_a.llm.json*",
                                 "*model:  py:judge:grade*"))


def test_the_judge_sees_the_conversation_and_a_changed_judge_is_named(judged):
    judged.makepyfile(test_a=dedent("""
        import pytest
        from pytest_llmmetrics import metrics

        @pytest.mark.llm(system="You are Teapot & Co.'s assistant.")
        def test_polite(llm, llm_metrics):
            llm_metrics.expect(llm("SEES-SYSTEM please"), metrics.judge("Polite"))
        """))
    judged.runpytest("-p", "no:xdist", "--llm-baseline-update").assert_outcomes(passed=1)
    baseline = json.loads((judged.path / ".llmmetrics" / "baseline.json").read_text())
    entry = baseline["tests"]["test_a.py::test_polite"]
    assert entry["metrics"]["judge[Polite]"]["mean"] == 1.0  # the judge saw the system prompt
    assert "judge" in entry["fingerprint"]
    result = judged.runpytest("-p", "no:xdist", "--llm-judge-model", "py:judge:lenient", "-v")
    result.stdout.fnmatch_lines(lines("*test_polite*judge[Polite]*1*0.75*-0.25*regressed*judge changed*"))


def test_a_bad_judge_model_setting_is_a_usage_error(judged):
    judged.makepyfile(test_a="def test_it():\n    pass\n")
    result = judged.runpytest("-p", "no:xdist", "--llm-judge-model", "gpt-4o")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(lines("*--llm-judge-model / llm_judge_model: unknown model spec 'gpt-4o'*"))


def test_a_server_judge_grades_samples_at_once_in_json_schema_mode(bot):
    answer = '{"score": 5, "reason": "Clear."}'
    with FaultServer(default=("together", 3, 3, answer)) as server:
        bot.makeini(f"[pytest]\nllm_judge_model = openai:judge\nllm_base_url = {server.base_url}\n"
                    "llm_concurrency = 3\n")
        bot.makepyfile(test_a=dedent("""
            from pytest_llmmetrics import metrics

            def test_samples(llm_metrics):
                llm_metrics.expect(["a", "b", "c"], metrics.judge("Clear"))
            """))
        result = bot.runpytest("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert server.most_in_flight == 3
    body = server.seen[0].body
    assert body["model"] == "judge" and body["temperature"] == 0.0 and body["seed"] == 0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["properties"]["score"]["enum"] == [1, 2, 3, 4, 5]


def test_a_server_that_refuses_json_schema_gets_the_simpler_form_once(bot):
    refusal = ("status", 422, {}, "response_format: Input should be 'text' or 'json_object'")
    answer = ("ok", '{"score": 4, "reason": "Fine."}')
    with FaultServer([refusal, answer], default=answer) as server:
        bot.makeini(f"[pytest]\nllm_judge_model = openai:judge\nllm_base_url = {server.base_url}\n"
                    "llm_concurrency = 1\n")
        bot.makepyfile(test_a=dedent("""
            from pytest_llmmetrics import metrics

            def test_it(llm_metrics):
                llm_metrics.expect(["a", "b"], metrics.judge("Clear"))
            """))
        bot.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
    formats = [s.body["response_format"] for s in server.seen]
    assert [f["type"] for f in formats] == ["json_schema", "json_object", "json_object"]
    assert formats[1]["schema"]["required"] == ["score", "reason"]


def test_the_real_llama_cpp_server_as_judge_recorded_then_replayed(bot, llama_server):
    bot.makeini(f"[pytest]\nllm_model = openai:smollm2\nllm_judge_model = openai:smollm2\n"
                f"llm_base_url = {llama_server.base_url}\n")
    bot.makepyfile(test_a=dedent("""
        import pytest
        from pytest_llmmetrics import metrics

        @pytest.mark.llm(system="You are a helpful assistant. Answer in one short sentence.", max_tokens=48)
        def test_capital(llm, llm_metrics):
            reply = llm("What is the capital of France?")
            llm_metrics.expect(reply, metrics.judge("The reply names Paris as the capital of France", min=0))
        """))
    first = bot.runpytest("-p", "no:xdist", "--llm-record-mode=new_episodes", "--llm-report-json=live.json")
    first.assert_outcomes(passed=1)  # llama.cpp's server took the judgement's schema: a readable score
    recorded = json.loads((bot.path / "__recordings__" / "test_a.llm.json").read_text())["recordings"]
    judge_entries = [e for e in recorded if "response_format" in e["params"]]
    assert len(judge_entries) == 1 and json.loads(judge_entries[0]["replies"][0]["text"])["score"] in range(1, 6)
    # Replayed: the server is not asked again (a wrong URL proves it), and the value is the same.
    second = bot.runpytest("-p", "no:xdist", "--llm-record-mode=none", "--llm-base-url", "http://127.0.0.1:9/v1",
                           "--llm-report-json=replay.json")
    second.assert_outcomes(passed=1)
    values = [json.loads((bot.path / name).read_text())["rows"][0]["values"]["current"]
              for name in ("live.json", "replay.json")]
    assert values[0] == values[1]


def test_samples_refused_together_step_down_one_form_only(bot):
    """Concurrent judge requests that the server refuses at once each fall back to the next form, not past it."""
    with FaultServer(default=("refuse_json_schema", 3, '{"score": 5, "reason": "Fine."}')) as server:
        bot.makeini(f"[pytest]\nllm_judge_model = openai:judge\nllm_base_url = {server.base_url}\n"
                    "llm_concurrency = 3\nllm_retry_backoff = 0\n")
        bot.makepyfile(test_a=dedent("""
            from pytest_llmmetrics import metrics

            def test_it(llm_metrics):
                llm_metrics.expect(["a", "b", "c"], metrics.judge("Clear"))
            """))
        bot.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
    kinds = [(s.body["response_format"]["type"], "schema" in s.body["response_format"]) for s in server.seen]
    assert server.most_in_flight == 3  # the three were refused while all in flight
    assert sorted(kinds) == [("json_object", True)] * 3 + [("json_schema", False)] * 3
