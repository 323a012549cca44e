"""Unit tests of Check, the @metric decorator and the metric registry."""

from __future__ import annotations

import pytest

import pytest_llmmetrics
from pytest_llmmetrics import Check, ConfigError, Measurement, MetricError, Response
from pytest_llmmetrics.checks.registry import builtin_registry
from pytest_llmmetrics.metrics import NOT_CHECKS
from pytest_llmmetrics.metrics import __all__ as BUILTINS


def test_threshold_words_and_bounds():
    assert Check("x", lambda r: 1, min=0.5).threshold == ">= 0.5"
    assert Check("x", lambda r: 1, max=3).threshold == "<= 3"
    assert Check("x", lambda r: 1, min=1, max=3).threshold == "between 1 and 3"
    assert Check("x", lambda r: 1).threshold == "recorded only"
    assert Check("x", lambda r: 1, min=1, boolean=True).threshold == "must be true"
    with pytest.raises(ConfigError, match="min=3 is greater than max=1"):
        Check("x", lambda r: 1, min=3, max=1)
    with pytest.raises(ConfigError, match="max='5' is not a finite number"):
        Check("x", lambda r: 1, max="5")
    with pytest.raises(ConfigError, match="non-empty string"):
        Check("", lambda r: 1)


def test_evaluate_values():
    reply = Response("hello")
    assert Check("x", lambda r: Measurement(2, "why")).evaluate(reply).detail == "why"
    unbounded_bool = Check("x", lambda r: False).evaluate(reply)
    assert (unbounded_bool.passed, unbounded_bool.threshold) == (False, "must be true")
    assert Check("x", lambda r: 7.5).evaluate(reply).passed  # recorded only
    with pytest.raises(MetricError, match="gave 'high' \\(str\\)"):
        Check("x", lambda r: "high").evaluate(reply)
    with pytest.raises(MetricError, match="finite"):
        Check("x", lambda r: float("inf")).evaluate(reply)
    assert Check("x", lambda r: len(r.text)).evaluate("abc").value == 3  # plain strings are replies too
    renamed = Check("contains[a]", lambda r: 1, min=1).named("greeting")
    assert (renamed.name, renamed.kind) == ("greeting", "contains")


def test_metric_decorator_bare_and_with_arguments():
    @pytest_llmmetrics.metric
    def shouts(reply) -> bool:
        return reply.text.isupper()

    @pytest_llmmetrics.metric(name="exclaims", higher_is_better=False, max=1)
    def count_exclamations(reply, extra=0):
        return reply.text.count("!") + extra

    assert shouts().evaluate("HI").passed and not shouts().evaluate("hi").passed
    check = count_exclamations()
    assert (check.name, check.max, check.higher_is_better) == ("exclaims", 1.0, False)
    assert not count_exclamations(extra=5).evaluate("hi!").passed
    assert count_exclamations(max=10, extra=5).evaluate("hi!").passed
    assert count_exclamations(name="bangs").name == "bangs"
    registry = builtin_registry()
    assert "shouts" in registry and "exclaims" in registry
    assert registry.check("exclaims").max == 1.0


def test_metric_decorator_rejects_builtin_and_duplicate_names():
    with pytest.raises(ConfigError, match="'no_pii' is a built-in metric"):
        @pytest_llmmetrics.metric(name="no_pii")
        def mine(reply):
            return 0

    @pytest_llmmetrics.metric(name="unique_name")
    def first(reply):
        return 0

    with pytest.raises(ConfigError, match="'unique_name' is defined twice"):
        @pytest_llmmetrics.metric(name="unique_name")
        def second(reply):
            return 0

    with pytest.raises(ConfigError, match="min=2 is greater than max=1"):
        @pytest_llmmetrics.metric(min=2, max=1)
        def impossible(reply):
            return 0


def test_registry_has_every_builtin_and_explains_unknown_names():
    registry = builtin_registry()
    assert set(BUILTINS) - NOT_CHECKS <= set(registry.names())
    assert registry.check("word_count", max=5).max == 5
    with pytest.raises(ConfigError, match=r"unknown metric 'word_cout'\. Did you mean 'word_count'"):
        registry.get("word_cout")
    with pytest.raises(ConfigError, match="must be a Python identifier"):
        registry.add("bad name", lambda: None)
    registry.add("mine", lambda: Check("mine", lambda r: 1), origin="a")
    with pytest.raises(ConfigError, match="registered twice, by a and b"):
        registry.add("mine", lambda: Check("mine", lambda r: 1), origin="b")
    registry.add("not_a_check", lambda: 42)
    with pytest.raises(ConfigError, match="did not build a Check"):
        registry.check("not_a_check")


def test_wrong_arguments_to_a_named_metric_say_what_it_takes():
    registry = builtin_registry()
    with pytest.raises(ConfigError, match=r"metric 'word_count': got an unexpected keyword argument 'maxx'; "
                                          r"it takes word_count\(\*, min"):
        registry.check("word_count", maxx=3)
    with pytest.raises(ConfigError, match="metric 'json_equals': missing a required argument: 'expected'"):
        registry.check("json_equals")
    assert registry.check("word_count", max=3).max == 3

    @pytest_llmmetrics.metric(max=0)
    def shouts(reply, allowed=0):
        return reply.text.count("!") - allowed

    assert registry.check("shouts", allowed=1, max=2).max == 2  # its own arguments, and the bounds
    with pytest.raises(ConfigError, match=r"metric 'shouts': got an unexpected keyword argument 'alowed'; "
                                          r"it takes shouts\(allowed=0, \*, min=None, max=None, name=None\)"):
        registry.check("shouts", alowed=1)
