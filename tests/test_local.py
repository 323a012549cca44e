"""The embedded ``local`` model: the real SmolLM2-135M GGUF run in-process by llama-cpp-python."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import dedent
from pytest_llmmetrics.errors import ConfigError, ModelError
from pytest_llmmetrics.local import LocalModel

pytest.importorskip("llama_cpp", reason="the local model needs pytest-llmmetrics[local]")

HELPFUL = {"role": "system", "content": "You are a helpful assistant."}
CAPITAL = [HELPFUL, {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def local() -> LocalModel:
    return LocalModel()


def test_capital_of_france_on_the_default_model(run, bot):
    """``local`` is the default spec: a first test needs no configuration, serially and under xdist."""
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import metrics

            pytestmark = pytest.mark.llm(system="You are a helpful assistant.", max_tokens=64)

            def test_capital(llm, llm_metrics):
                reply = llm("What is the capital of France?")
                assert reply.model == "local"
                assert reply.prompt_tokens > 5 and 0 < reply.completion_tokens <= 64
                assert reply.finish_reason == "stop"
                llm_metrics.expect(reply, metrics.contains("Paris"), metrics.latency(max=60),
                                   metrics.not_truncated())

            def test_wrong_capital_fails(llm, llm_metrics):
                llm_metrics.expect(llm("What is the capital of France?"), metrics.contains("Berlin"))
            """
        )
    )
    result = run("-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_wrong_capital_fails*contains[[]Berlin[]]*"])
    assert "llm metrics" in result.stdout.str()


def test_reply_fields_and_determinism(local):
    first = local(CAPITAL, temperature=0.0, max_tokens=64)
    again = local(CAPITAL, temperature=0.0, max_tokens=64)
    assert "Paris" in first.text
    assert first.text == again.text
    assert first.prompt_tokens == again.prompt_tokens and first.prompt_tokens > 5
    assert first.completion_tokens == again.completion_tokens > 0
    assert first.finish_reason == "stop"
    assert first.latency_s > 0


def test_reply_does_not_depend_on_the_prompt_before_it(local):
    alone = local(CAPITAL, temperature=0.0, max_tokens=48).text
    local([{"role": "user", "content": "Write one sentence about the sea."}], temperature=0.0, max_tokens=48)
    local([{"role": "system", "content": "Answer briefly."}, CAPITAL[1]], temperature=0.0, max_tokens=48)
    assert local(CAPITAL, temperature=0.0, max_tokens=48).text == alone


def test_messages_go_through_the_gguf_chat_template(local):
    helpful = local(CAPITAL, temperature=0.0, max_tokens=8)
    longer = local([{"role": "system", "content": "You are a helpful assistant for a shop that sells tea."},
                    CAPITAL[1]], temperature=0.0, max_tokens=8)
    # With no system message, SmolLM2's template adds its own, longer default system prompt.
    bare = local(CAPITAL[1:], temperature=0.0, max_tokens=8)
    assert longer.prompt_tokens > helpful.prompt_tokens
    assert bare.prompt_tokens > helpful.prompt_tokens + 5


def test_seed_makes_sampling_reproducible(local):
    prompt = [HELPFUL, {"role": "user", "content": "Name a colour and a fruit."}]
    texts = [local(prompt, temperature=1.2, max_tokens=24, seed=seed).text for seed in (1, 2, 3, 4)]
    assert local(prompt, temperature=1.2, max_tokens=24, seed=1).text == texts[0]
    assert len(set(texts)) >= 2  # different seeds really sample


def test_max_tokens_truncates_and_says_so(local):
    reply = local([HELPFUL, {"role": "user", "content": "Tell me a long story about a dragon."}], temperature=0.0,
                  max_tokens=5)
    assert reply.completion_tokens == 5
    assert reply.finish_reason == "length"


def test_unknown_parameter_is_a_clear_error(local):
    with pytest.raises(ConfigError, match=r"does not take parameter\(s\) top_kk; llama.cpp takes: .*top_k"):
        local(CAPITAL, temperature=0.0, max_tokens=8, top_kk=3)


def test_prompt_longer_than_the_context_is_a_clear_error(local):
    with pytest.raises(ModelError, match="exceed context window.*shorten the prompt or lower max_tokens"):
        local([{"role": "user", "content": "word " * 5000}], temperature=0.0, max_tokens=8)


def test_missing_llama_cpp_says_what_to_install(bot):
    bot.makeconftest("import sys\nsys.modules['llama_cpp'] = None  # as if not installed\n")
    bot.makepyfile(test_a="def test_one(llm):\n    llm('hi')\n\ndef test_two(llm):\n    llm('hi')\n")
    result = bot.runpytest_subprocess()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "FAILED test_a.py::test_one - Failed: model 'local' needs llama-cpp-python*",
        "FAILED test_a.py::test_two - Failed: model 'local' needs llama-cpp-python*",
    ])
    out = result.stdout.str()
    assert "pip install 'pytest-llmmetrics[local]'" in out
    assert "Traceback" not in out and "INTERNALERROR" not in out


def test_collection_does_not_load_the_model(bot):
    bot.makepyfile(test_a="def test_one(llm):\n    llm('hi')\n")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=bot.path, capture_output=True, text=True, timeout=120,
    )
    assert "1 test collected" in proc.stdout, proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "pytest_llmmetrics.settings" in imported  # the plugin was loaded
    assert [m for m in imported if m.split(".")[0] in ("llama_cpp", "openai") or m == "pytest_llmmetrics.local"] == []
