"""The plugin's per-run state: kept in ``config.stash`` and put back when a run ends, so runs nest in-process."""

from __future__ import annotations

import pytest

from pytest_llmmetrics import state
from pytest_llmmetrics.checks import registry as checks_registry
from pytest_llmmetrics.checks.check import Check
from pytest_llmmetrics.plugin import ENGINE_KEY, metric_registry
from pytest_llmmetrics.semantic import engine as embeddings


def test_an_inner_run_leaves_the_outer_process_as_it_was(bot: pytest.Pytester):
    before_engine = embeddings.get_engine()
    bot.makeconftest(
        """
import pytest_llmmetrics
from pytest_llmmetrics import metrics

metrics.set_price("inner-model", input_per_mtok=1.0, output_per_mtok=2.0)

@pytest_llmmetrics.metric(min=1)
def inner_only(reply):
    return len(reply.text)
"""
    )
    bot.makepyfile(
        test_a="""
import pytest
from pytest_llmmetrics.semantic.engine import get_engine

@pytest.mark.llm(model="py:bot:reply")
def test_it(llm, llm_metrics, request):
    llm_metrics.expect(llm("capital?"), "inner_only")
    assert get_engine().cache_path is not None and str(request.config.rootpath) in str(get_engine().cache_path)
"""
    )
    result = bot.runpytest("-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # The inner run's @metric, price and engine are gone with it.
    assert "inner_only" not in checks_registry.builtin_registry()
    with pytest.raises(Exception, match="unknown metric 'inner_only'"):
        checks_registry.builtin_registry().check("inner_only")
    assert "inner-model" not in state.PRICES and "inner_only" not in state.DECORATED
    assert embeddings.get_engine() is before_engine


def test_two_inner_runs_each_get_their_own_engine(bot: pytest.Pytester):
    engines = []

    class Spy:
        @pytest.hookimpl(trylast=True)
        def pytest_configure(self, config: pytest.Config) -> None:
            engines.append(config.stash[ENGINE_KEY])

    bot.makepyfile(test_a="def test_ok(): pass")
    bot.makeini("[pytest]\nllm_similarity_threshold = 0.7\n")
    bot.runpytest("-p", "no:xdist", plugins=[Spy()]).assert_outcomes(passed=1)
    bot.makeini("[pytest]\nllm_similarity_threshold = 0.9\n")
    bot.runpytest("-p", "no:xdist", plugins=[Spy()]).assert_outcomes(passed=1)
    assert [e.threshold for e in engines] == [0.7, 0.9]
    assert embeddings.get_engine() not in engines


def test_the_metric_registry_follows_plugins_that_come_and_go(pytester: pytest.Pytester):
    def plugin_with(name: str) -> object:
        class Plugin:
            @staticmethod
            def pytest_llmmetrics_register_metrics(registry):  # noqa: ANN001, ANN205
                registry.add(name, lambda: Check(name, lambda reply: 1.0, min=1), origin=f"plugin {name}")

        return Plugin()

    config = pytester.parseconfigure()
    first, second = plugin_with("from_first"), plugin_with("from_second")
    config.pluginmanager.register(first, "first")
    assert "from_first" in metric_registry(config)
    # One leaves and another arrives: the same number of plugins, and still a new registry.
    config.pluginmanager.unregister(first)
    config.pluginmanager.register(second, "second")
    registry = metric_registry(config)
    assert "from_second" in registry and "from_first" not in registry
    assert metric_registry(config) is registry  # cached while nothing changes
