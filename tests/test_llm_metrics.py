"""Black-box: llm_metrics.record/expect, soft failure, samples, named and plugin metrics (serial and -n 2)."""

from __future__ import annotations

import glob
import re

import pytest
from conftest import dedent


def test_expect_passes_and_records(run, bot):
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import metrics

            @pytest.mark.llm(model="py:bot:reply")
            def test_capital(llm, llm_metrics):
                r = llm("What is the capital of France?")
                llm_metrics.expect(r, metrics.contains("Paris"), metrics.word_count(max=10), metrics.no_pii())
                llm_metrics.record("custom_score", 0.75)
                rec = llm_metrics.records
                assert rec["contains[Paris]"].values == [1.0] and rec["contains[Paris]"].passed == 1
                assert rec["word_count"].values == [6.0] and rec["word_count"].higher_is_better is False
                assert rec["no_pii"].values == [0.0]
                assert rec["custom_score"].values == [0.75] and rec["custom_score"].passed is None
                assert llm_metrics.misses == []
            """
        )
    )
    run().assert_outcomes(passed=1)


def test_expect_fails_once_listing_every_miss(run, bot):
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import metrics

            @pytest.mark.llm(model="py:bot:reply")
            def test_capital(llm, llm_metrics):
                r = llm("What is the capital of France?")
                llm_metrics.expect(r, metrics.contains("Berlin"), metrics.word_count(max=3), metrics.no_refusal())
                llm_metrics.expect(r, metrics.ends_with("!"))
                llm_metrics.record("reached_the_end", 1)
            """
        )
    )
    result = run()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*3 llm checks missed:",
            "- contains[Berlin] = false, needs must be true",
            "    missing: 'Berlin'",
            "    reply: 'The capital of France is Paris.'",
            "- word_count = 6, needs <= 3",
            "*",
            "- ends_with[!] = false, needs must be true",
        ]
    )
    assert "- no_refusal" not in out  # it passed
    assert out.count("llm checks missed") == 2  # the failure, and the short summary line
    assert "Traceback" not in out


def test_samples_mean_and_pass_rate(run, bot):
    bot.makepyfile(
        flaky="""
import itertools
_answers = itertools.cycle(["Paris", "Paris", "Paris", "Lyon", "Paris"])
def reply(messages, **params):
    return next(_answers)
""",
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import metrics

            @pytest.mark.llm(model="py:flaky:reply", temperature=0.8)
            def test_pass_rate_met(llm, llm_metrics):
                samples = llm.sample("capital?", 5)
                llm_metrics.expect(samples, metrics.contains("Paris"), pass_rate=0.8)
                rec = llm_metrics.records["contains[Paris]"]
                assert (rec.n, rec.passed, rec.mean) == (5, 4, 0.8)

            @pytest.mark.llm(model="py:flaky:reply", temperature=0.8)
            def test_pass_rate_missed(llm, llm_metrics):
                llm_metrics.expect(llm.sample("capital?", 5), metrics.contains("Paris"), pass_rate=0.9)

            @pytest.mark.llm(model="py:flaky:reply", temperature=0.8)
            def test_mean_without_pass_rate(llm, llm_metrics):
                llm_metrics.expect(llm.sample("capital?", 5), metrics.word_count(max=1), metrics.contains("Paris"))
            """
        ),
    )
    result = run("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "- contains[Paris] = 4 of 5 samples passed, needs pass rate >= 90% (must be true)",
            "    sample 3: false, missing: 'Paris'",
            "    reply: 'Lyon'",
        ]
    )
    result.stdout.fnmatch_lines(["- contains[Paris] = mean 0.8 over 5 samples (4 passed), needs every sample true"])


def test_named_metrics_decorator_and_plugin_hook(run, bot):
    bot.makeconftest(
        dedent(
            """
            import pytest_llmmetrics
            from pytest_llmmetrics import Check

            @pytest_llmmetrics.metric
            def greets(reply) -> bool:
                return reply.text.startswith("Hello")

            @pytest_llmmetrics.metric(higher_is_better=False, max=0)
            def exclamations(reply, allowed=0):
                return max(0, reply.text.count("!") - allowed)

            def polite(min=1):
                return Check("polite", lambda reply: "please" in reply.text.lower(), min=min, boolean=True)

            def pytest_llmmetrics_register_metrics(registry):
                registry.add("polite", polite)
            """
        )
    )
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from conftest import greets, exclamations

            pytestmark = pytest.mark.llm(model="py:bot:reply")

            def test_by_object(llm, llm_metrics):
                llm_metrics.expect(llm("hi"), greets(), exclamations(allowed=1))
                assert llm_metrics.records["exclamations"].values == [0.0]

            def test_by_name(llm, llm_metrics):
                llm_metrics.expect(llm("hi"), "greets", "no_markdown", llm_metrics.check("exclamations", allowed=1))

            def test_plugin_metric_misses(llm, llm_metrics):
                llm_metrics.expect(llm("hi"), "polite")

            def test_unknown_name(llm, llm_metrics):
                llm_metrics.expect(llm("hi"), "polit")
            """
        ),
    )
    result = run()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*- polite = false, needs must be true*"])
    result.stdout.fnmatch_lines(["*unknown metric 'polit'. Did you mean 'polite'? Known metrics: *char_count*"])
    assert "Traceback" not in result.stdout.str()


def test_metric_errors_fail_cleanly(run, bot):
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import metrics

            @pytest.mark.llm(model="py:bot:reply")
            def test_tokens_unknown(llm, llm_metrics):
                llm_metrics.expect(llm("hi"), metrics.tokens(max=10))

            def test_text_has_no_latency(llm_metrics):
                llm_metrics.expect("plain text", metrics.latency(max=1))

            def test_not_a_check(llm_metrics):
                llm_metrics.expect("x", metrics.no_pii)

            def test_no_checks(llm_metrics):
                llm_metrics.expect("x")

            def test_bad_pass_rate(llm_metrics):
                llm_metrics.expect(["x"], metrics.no_pii(), pass_rate=80)

            def test_bad_record(llm_metrics):
                llm_metrics.record("score", float("nan"))

            def test_bad_threshold(llm_metrics):
                metrics.word_count(min=10, max=5)
            """
        )
    )
    result = run()
    result.assert_outcomes(failed=7)
    out = result.stdout.str()
    for expected in [
        "tokens: the reply has no completion_tokens (model 'py:bot:reply')",
        "latency: the reply has no latency_s",
        "is not a check (call it: add the parentheses)",
        "expect() needs at least one check",
        "pass_rate must be a number in (0, 1], got 80",
        "llm_metrics.record('score') gave nan; a metric value must be a finite number",
        "metric 'word_count': min=10 is greater than max=5",
    ]:
        assert expected in out, expected
    assert "Traceback" not in out


def test_expect_says_what_it_takes(run, bot):
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import Response, metrics

            @pytest.mark.parametrize("reply", [None, 123])
            def test_not_a_reply(llm_metrics, reply):
                llm_metrics.expect(reply, metrics.no_pii())

            def test_not_a_reply_in_the_list(llm_metrics):
                llm_metrics.expect(["fine", None], metrics.no_pii())

            def test_response_without_text():
                Response(text=None)

            def test_check_on_a_number():
                metrics.word_count(max=3).evaluate(123)
            """
        )
    )
    result = run()
    result.assert_outcomes(failed=5)
    takes = "must be a Response (what llm(...) returns) or a str"
    for test, message in [
        ("test_not_a_reply[None]", (f"llm_metrics.expect(): the reply {takes}, or a non-empty list of them "
                                    "(samples); got NoneType (None)")),
        ("test_not_a_reply[123]", (f"llm_metrics.expect(): the reply {takes}, or a non-empty list of them "
                                   "(samples); got int (123)")),
        ("test_not_a_reply_in_the_list", f"llm_metrics.expect(): reply 1 of the list {takes}; got NoneType (None)"),
        ("test_response_without_text", ("Response.text must be a str, got NoneType (None); a reply with no text "
                                        "is Response(text='')")),
        ("test_check_on_a_number", f"check 'word_count': the reply {takes}; got int (123)"),
    ]:
        result.stdout.fnmatch_lines([f"*_ {glob.escape(test)} _*", glob.escape(message)])
    out = result.stdout.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out


def test_reply_errors_are_config_errors_and_type_errors():
    from pytest_llmmetrics import ConfigError, Response
    from pytest_llmmetrics.response import as_response

    for make in (lambda: Response(text=b"bytes"), lambda: as_response(None)):
        with pytest.raises(ConfigError) as info:
            make()
        assert isinstance(info.value, TypeError)


def test_misses_are_shown_when_the_test_also_raised(bot):
    bot.makepyfile(
        test_a=dedent(
            """
            from pytest_llmmetrics import metrics

            def test_it(llm_metrics):
                llm_metrics.expect("not json", metrics.is_json())
                raise ValueError("later code broke")
            """
        )
    )
    result = bot.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: later code broke*", "*llm metrics*", "*- is_json = false*"])


def test_metric_values_are_any_real_number_within_range():
    import decimal
    import fractions

    from pytest_llmmetrics.checks.check import to_value
    from pytest_llmmetrics.errors import MetricError

    assert to_value(decimal.Decimal("0.25"), "m") == 0.25 and to_value(fractions.Fraction(1, 4), "m") == 0.25
    for bad in (1e200, -1e16, float("nan"), float("inf"), decimal.Decimal("1e400")):
        with pytest.raises(MetricError, match="must be a finite number between -1e\\+15 and 1e\\+15"):
            to_value(bad, "metric 'big'")


def test_huge_values_fail_the_test_not_the_session(pytester):
    pytester.makepyfile(test_a=(
        "def test_big(llm_metrics):\n"
        "    for v in (1e200, -1e200):\n"
        "        llm_metrics.record('big', v, higher_is_better=True)\n"
        "def test_fine(llm_metrics):\n"
        "    llm_metrics.record('fine', 1.0)\n"))
    result = pytester.runpytest("--llm-baseline-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*llm_metrics.record('big') gave 1e+200; a metric value must be a finite number*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("latency_s", "fast", "latency_s must be a number of seconds >= 0 or None, got str ('fast')"),
    ("latency_s", float("nan"), "latency_s must be a number of seconds >= 0"),
    ("latency_s", -1.0, "latency_s must be a number of seconds >= 0"),
    ("prompt_tokens", -5, "prompt_tokens must be an int >= 0 or None"),
    ("completion_tokens", 2.5, "completion_tokens must be an int >= 0 or None"),
    ("finish_reason", 3, "finish_reason must be a str or None"),
])
def test_reply_fields_are_checked_where_the_reply_is_made(field, value, message):
    from pytest_llmmetrics import Response
    from pytest_llmmetrics.errors import ReplyError

    with pytest.raises(ReplyError, match=re.escape(f"Response.{message}")):
        Response(text="ok", **{field: value})


def test_a_named_check_from_the_registry_can_be_renamed():
    from pytest_llmmetrics.checks.registry import builtin_registry

    registry = builtin_registry()
    assert registry.check("word_count", max=3, name="short").name == "short"
    assert registry.check("contains", "Paris", name="capital").name == "capital"
