"""The embedded ``local`` model: the real SmolLM2-135M GGUF run in-process by llama-cpp-python."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
from conftest import dedent

from pytest_llmmetrics.errors import ConfigError, ModelError
from pytest_llmmetrics.providers.local import LocalModel

pytest.importorskip("llama_cpp", reason="the local model needs pytest-llmmetrics[local]")

HELPFUL = {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."}
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

            pytestmark = pytest.mark.llm(system="You are a helpful assistant. Answer in one short sentence.", max_tokens=64)

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
    helpful = local([{"role": "system", "content": "You are a helpful assistant."}, CAPITAL[1]],
                    temperature=0.0, max_tokens=8)
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
    result = bot.runpytest()
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
    assert "pytest_llmmetrics.options" in imported  # the plugin was loaded
    assert [m for m in imported if m.split(".")[0] in ("llama_cpp", "openai") or m == "pytest_llmmetrics.providers.local"] == []


def test_timeout_stops_a_generation_and_the_next_test_gets_the_model(run, bot):
    """An endless generation: the test fails after --llm-timeout naming the model and the limit, and the
    generation is stopped at the next token, so the following test has the model at once."""
    bot.makepyfile(
        test_a=dedent(
            """
            import time

            import pytest

            pytestmark = pytest.mark.llm(system="You are a helpful assistant. Answer in one short sentence.")

            def at_least_20_ms_a_token(input_ids, scores):
                time.sleep(0.02)
                return scores

            # No end-of-text tokens (SmolLM2's 0 and 2), and 3500 tokens of 20 ms or more: over a minute on any
            # machine, whereas a short reply takes well under the timeout even on a busy one.
            @pytest.mark.llm(max_tokens=3500, params={"logit_bias": {"0": -100, "2": -100},
                                                      "logits_processor": [at_least_20_ms_a_token]})
            def test_endless(llm):
                llm("Count from 1 to 5000, one number per line.")

            @pytest.mark.llm(max_tokens=4)
            def test_after(llm):
                assert llm("What is the capital of France?").completion_tokens > 0
            """
        )
    )
    result = run("--llm-timeout", "20")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "*_ test_endless _*",
        "model 'local' gave no answer within 20 s (--llm-timeout / llm_timeout); its generation was stopped.*",
    ])
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out


def test_a_timeout_does_not_change_replies(local):
    timed = LocalModel(timeout=60)  # the per-token stop check is in place, and never fires
    for params in ({"temperature": 0.0, "max_tokens": 48}, {"temperature": 1.2, "max_tokens": 24, "seed": 3}):
        assert timed(CAPITAL, **params).text == local(CAPITAL, **params).text


class StuckLlama:
    """Stands in for llama.cpp stuck where no per-token check runs (e.g. in C): only ``release`` ends it."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def token_eos(self) -> int:
        return 2

    def reset(self) -> None:
        pass

    def create_chat_completion(self, messages: Any, **params: Any) -> dict[str, Any]:
        self.release.wait(600)
        return {"choices": [{"message": {"content": "at last"}, "finish_reason": "stop"}], "usage": {}}


class StuckLocal(LocalModel):
    def _load(self) -> Any:
        self._llama, self._accepted = StuckLlama(), frozenset({"temperature", "max_tokens"})
        return self._llama


def test_a_request_that_cannot_be_stopped_blocks_later_ones_at_most_the_timeout():
    model = StuckLocal(timeout=0.3)
    with pytest.raises(ModelError, match=r"^model 'local' gave no answer within 0.3 s \(--llm-timeout / llm_timeout\)"):
        model(CAPITAL, temperature=0.0, max_tokens=8)
    with pytest.raises(ModelError, match=r"^model 'local' is still busy with an earlier request that timed out and "
                                         r"has not stopped yet; waited 0.3 s \(--llm-timeout / llm_timeout\)"):
        model(CAPITAL, temperature=0.0, max_tokens=8)
    model._llama.release.set()  # the stuck request ends and frees the model
    model.timeout = 60
    assert model(CAPITAL, temperature=0.0, max_tokens=8).text == "at last"


def test_parameter_llama_cpp_cannot_use_names_the_parameter_and_the_model(run, bot):
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest

            @pytest.mark.llm(max_tokens=4, params={"top_k": "many"})
            def test_wrong_type(llm):
                llm("Hi")

            @pytest.mark.llm(max_tokens=4, params={"logit_bias": {"a": 1}})
            def test_wrong_value(llm):
                llm("Hi")
            """
        )
    )
    result = run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*_ test_wrong_type _*", ("model 'local': parameter top_k must be an int, got "
                                 "'many' (str); fix it in the test's @pytest.mark.llm(params={...})")])
    result.stdout.fnmatch_lines(["*_ test_wrong_value _*", ("model 'local': llama.cpp cannot use the parameters "
                                 "logit_bias={'a': 1}, max_tokens=4, temperature=0.0 (ValueError: *); fix them in *")])
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out and "ctypes" not in out


def test_parameter_of_the_wrong_type_is_refused_before_llama_cpp_sees_it(local):
    for name, value, expected in [("top_k", 2.5, "an int"), ("min_p", "low", "a float"), ("top_k", True, "an int"),
                                  ("logprobs", 1, "a bool or None")]:
        with pytest.raises(ConfigError, match=rf"^model 'local': parameter {name} must be {expected}, got "):
            local(CAPITAL, temperature=0.0, max_tokens=4, **{name: value})
