"""Black-box: the llm fixture, marker settings, llm_model override and model specs (serial and -n 2)."""

from __future__ import annotations

import pytest
from conftest import dedent


def test_response_fields_and_str(run, bot):
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import Response

            @pytest.mark.llm(model="py:bot:reply")
            def test_reply(llm):
                r = llm("What is the capital of France?")
                assert isinstance(r, Response)
                assert str(r) == r.text == "The capital of France is Paris."
                assert r.model == "py:bot:reply"
                assert r.latency_s is not None and r.latency_s >= 0
                assert r.prompt_tokens is None and r.finish_reason is None

            @pytest.mark.llm(model="py:bot:detailed")
            def test_detailed_response_is_kept(llm):
                r = llm("anything")
                assert (r.text, r.prompt_tokens, r.completion_tokens, r.finish_reason) == (
                    "Short answer.", 12, 3, "stop")
                assert r.model == "py:bot:detailed" and r.latency_s >= 0

            @pytest.mark.llm(model="py:bot:no_params")
            def test_callable_without_params(llm):
                assert llm("hi", temperature=0.5).text == "no params: hi"
            """
        )
    )
    result = run()
    result.assert_outcomes(passed=3)


def test_settings_closest_marker_wins(run, bot):
    bot.makepyfile(
        test_a=dedent(
            """
            import ast
            import pytest

            pytestmark = pytest.mark.llm(model="py:bot:reply", system="module system", max_tokens=100)

            @pytest.mark.llm(temperature=0.3)
            class TestClass:
                @pytest.mark.llm(max_tokens=7, seed=11)
                def test_merged(self, llm):
                    sent = ast.literal_eval(llm("echo").text)
                    assert sent["temperature"] == 0.3      # class
                    assert sent["max_tokens"] == 7         # function beats module
                    assert sent["seed"] == 11
                    assert sent["messages"][0] == {"role": "system", "content": "module system"}

            def test_defaults(llm):
                sent = ast.literal_eval(llm("echo").text)
                assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.0, 100, None)

            def test_overrides_per_call(llm):
                sent = ast.literal_eval(llm("echo", temperature=1.5, max_tokens=5).text)
                assert (sent["temperature"], sent["max_tokens"]) == (1.5, 5)

            def test_chat_and_sample(llm):
                sent = ast.literal_eval(llm.chat([
                    {"role": "system", "content": "own system"},
                    {"role": "user", "content": "echo"},
                ]).text)
                assert [m["content"] for m in sent["messages"]] == ["own system", "echo"]
                replies = llm.sample("echo", 3, seed=5)
                assert [ast.literal_eval(r.text)["seed"] for r in replies] == [5, 6, 7]
                conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                {"role": "user", "content": "echo"}]
                sent = [ast.literal_eval(r.text) for r in llm.sample(conversation, 2)]
                assert [len(s["messages"]) for s in sent] == [4, 4]  # the module's system prompt first
            """
        )
    )
    run().assert_outcomes(passed=4)


def test_model_resolution_cli_ini_marker(bot, monkeypatch):
    bot.makeini("[pytest]\nllm_model = py:bot:no_params\n")
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest, os

            def test_default(llm):
                assert llm.name == os.environ["EXPECTED"]

            @pytest.mark.llm(model="py:bot:reply")
            def test_marker_wins(llm):
                assert llm.name == "py:bot:reply"
            """
        )
    )
    monkeypatch.setenv("EXPECTED", "py:bot:no_params")
    bot.runpytest().assert_outcomes(passed=2)
    monkeypatch.setenv("EXPECTED", "py:bot:detailed")
    bot.runpytest("--llm-model", "py:bot:detailed").assert_outcomes(passed=2)


def test_llm_model_fixture_override(run, bot):
    bot.makeconftest(
        dedent(
            """
            import pytest

            class Shop:
                def __call__(self, messages, **params):
                    return "shop says: " + messages[-1]["content"]

            @pytest.fixture
            def llm_model():
                return Shop()
            """
        )
    )
    bot.makepyfile(
        test_a=dedent(
            """
            def test_override(llm):
                r = llm("hi")
                assert r.text == "shop says: hi"
                assert r.model == "Shop"
            """
        )
    )
    run().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("temperature='hot'", "temperature must be a number, got 'hot' (str)"),
        ("max_tokens=-1", "max_tokens must be >= 1, got -1"),
        ("temprature=0.2", "unknown argument 'temprature' (did you mean 'temperature'?)"),
        ("'py:bot:reply'", "keyword arguments only"),
        ("model='gpt4'", "unknown model spec 'gpt4'; known specs: local, openai:<model>, py:<module>:<callable>"),
        ("model='openai:'", "model: model spec 'openai:' has no model name: write openai:<model>, e.g. openai:gpt-4o-mini"),
        ("model='bogus'", "@pytest.mark.llm: model: unknown model spec 'bogus'; known specs: local, openai:<model>"),
        ("top_p=0", "top_p must be > 0 and <= 1, got 0"),
        ("params=['x']", "params must be a dict with string keys"),
    ],
)
def test_bad_marker_is_a_collection_error(run, bot, marker, expected):
    bot.makepyfile(
        test_bad=dedent(
            f"""
            import pytest

            @pytest.mark.llm({marker})
            def test_it(llm):
                pass

            def test_other():
                pass
            """
        )
    )
    result = run()
    assert result.ret == pytest.ExitCode.INTERRUPTED if run.mode == "serial" else result.ret != 0
    result.stdout.fnmatch_lines(["*ERROR collecting test_bad.py*"])
    assert "test_bad.py::test_it: @pytest.mark.llm" in result.stdout.str()
    assert expected in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str()
    assert "passed" not in result.stdout.str()  # nothing ran with bad settings


def test_bad_marker_on_class_names_each_test(bot):
    bot.makepyfile(
        test_bad=dedent(
            """
            import pytest

            @pytest.mark.llm(seed="abc")
            class TestX:
                def test_one(self):
                    pass
            """
        )
    )
    result = bot.runpytest()
    result.stdout.fnmatch_lines(["*test_bad.py::TestX::test_one: @pytest.mark.llm: seed must be an int, got 'abc'*"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--llm-model", "gpt4"], "unknown model spec 'gpt4'"),
        (["--llm-model", "py:no_colon"], "write py:<module>:<callable>"),
        (["--llm-model", "openai:"], ("--llm-model: model spec 'openai:' has no model name: write "
                                      "openai:<model>, e.g. openai:gpt-4o-mini")),
        (["--llm-record-mode", "sometimes"], "'sometimes' is not one of off, none, once, new_episodes, all"),
        (["--llm-tolerance", "similarity=0.02"], "--llm-tolerance / llm_tolerance: 'similarity=0.02' is not NAME:VALUE"),
        (["--llm-device", "gpu"], "--llm-device / llm_device: 'gpu' is not one of auto, cpu, cuda, cuda:N or mps"),
        (["--llm-base-url", "127.0.0.1:8000"], "--llm-base-url / llm_base_url: '127.0.0.1:8000' is not an http(s) URL"),
        (["--llm-timeout", "-1"], "--llm-timeout / llm_timeout: '-1' must be a number >= 0"),
        (["--llm-max-retries", "-1"], "--llm-max-retries / llm_max_retries: '-1' must be an integer >= 0"),
        (["--llm-max-retries", "two"], "must be an integer >= 0, e.g. 3"),
    ],
)
def test_bad_option_is_a_usage_error(bot, args, expected):
    bot.makepyfile(test_a="def test_a(): pass")
    result = bot.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("ini", "expected"),
    [
        ("llm_record_mode = never", "llm_record_mode: 'never' is not one of off, none, once, new_episodes, all"),
        ("llm_concurrency = 0", "llm_concurrency: '0' must be an integer >= 1, e.g. 4"),
        ("llm_retry_backoff = soon", "llm_retry_backoff: 'soon' must be a number >= 0"),
        ("llm_similarity_threshold = 1.5", "llm_similarity_threshold: '1.5' must be a number in (0, 1]"),
        ("llm_similarity_threshold = high", "llm_similarity_threshold: 'high' must be a number in (0, 1]"),
        ("llm_fail_on_regression = maybe",
         "llm_fail_on_regression in {ini}: invalid truth value 'maybe'; write true or false"),
    ],
)
def test_bad_ini_is_a_usage_error(bot, ini, expected):
    path = bot.makeini(f"[pytest]\n{ini}\n")
    bot.makepyfile(test_a="def test_a(): pass")
    result = bot.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected.format(ini=path) in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("py:nowhere_module:reply", "py:nowhere_module:reply: cannot import 'nowhere_module'"),
        ("py:bot:missing", "module 'bot' has no attribute 'missing'"),
        ("py:bot:CALLS", "is not callable"),
        ("py:os:getcwd", ("py:os:getcwd: getcwd cannot be called as a model (too many positional arguments). A "
                          "model is called as fn(messages, **params) and returns a str or a pytest_llmmetrics.Response")),
        ("py:strict:reply", ("py:strict:reply: reply cannot be called as a model (missing a required argument: "
                             "'context'). A model is called as fn(messages, **params)")),
    ],
)
def test_model_that_cannot_be_loaded_fails_the_test_cleanly(run, bot, spec, expected):
    bot.makepyfile(
        strict="def reply(messages, context, temperature, max_tokens):\n    return 'never'\n",
        test_a=dedent(
            f"""
            import pytest

            @pytest.mark.llm(model={spec!r})
            def test_it(llm):
                llm("hi")

            def test_unaffected():
                pass
            """
        )
    )
    result = run()
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert expected in out
    assert "Traceback" not in out and "INTERNALERROR" not in out


def test_model_returning_garbage_fails_with_a_clear_message(run, bot):
    bot.makepyfile(
        bad_model="def reply(messages, **params):\n    return 42\n",
        test_a=dedent(
            """
            import pytest

            @pytest.mark.llm(model="py:bad_model:reply")
            def test_it(llm):
                llm("hi")
            """
        ),
    )
    result = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*model py:bad_model:reply returned int (42); a model must return a str or*"])


def test_callable_may_require_the_parameters_every_call_sends(run, bot):
    bot.makepyfile(
        strict="def reply(messages, temperature, max_tokens):\n    return f'{temperature} {max_tokens}'\n",
        test_a=dedent(
            """
            import pytest

            @pytest.mark.llm(model="py:strict:reply", max_tokens=9)
            def test_it(llm):
                assert llm("hi").text == "0.0 9"
            """
        ),
    )
    run().assert_outcomes(passed=1)


def test_response_text_that_is_not_a_str_names_the_model(run, bot):
    bot.makepyfile(
        bad_model=dedent(
            """
            from pytest_llmmetrics import Response

            def no_text(messages, **params):
                return Response(text=None, completion_tokens=0)

            def number_text(messages, **params):
                return Response(text=123)
            """
        ),
        test_a=dedent(
            """
            import pytest

            @pytest.mark.llm(model="py:bad_model:no_text")
            def test_none(llm):
                llm("hi")

            @pytest.mark.llm(model="py:bad_model:number_text")
            def test_number(llm):
                llm("hi")
            """
        ),
    )
    result = run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_none _*", "model py:bad_model:no_text returned an unusable reply: Response.text must be a str, "
        "got NoneType (None); a reply with no text is Response(text='')"
    ])
    result.stdout.fnmatch_lines([
        "*_ test_number _*", "model py:bad_model:number_text returned an unusable reply: Response.text must be a "
        "str, got int (123)*"
    ])
    out = result.stdout.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out


@pytest.mark.parametrize("spec", ["py:bot:reply", "openai:tea-model"])
def test_llm_model_fixture_may_return_a_spec(run, bot, spec):
    from servers import FaultServer

    bot.makeconftest(
        dedent(
            f"""
            import pytest

            @pytest.fixture
            def llm_model():
                return {spec!r}
            """
        )
    )
    bot.makepyfile(
        test_a=dedent(
            f"""
            from pytest_llmmetrics.plugin import model_cache

            def test_resolved(llm, request):
                assert llm.name == {spec!r}
                assert llm.model is model_cache(request.config).get({spec!r})  # the default fixture's models
                assert llm("What is the capital of France?").text == "The capital of France is Paris."

            def test_again(llm):
                assert llm("What is the capital of France?").model == {spec!r}
            """
        )
    )
    with FaultServer(default=("ok", "The capital of France is Paris.")) as server:
        run("--llm-base-url", server.base_url).assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ("'gpt4'", ("the llm_model fixture returned 'gpt4': unknown model spec 'gpt4'; known specs: local, "
                    "openai:<model>, py:<module>:<callable>")),
        ("'openai:'", "the llm_model fixture returned 'openai:': model spec 'openai:' has no model name"),
        ("None", ("the llm_model fixture returned NoneType (None); return a model spec such as "
                  "'py:myapp.bot:reply' (local, openai:<model>, py:<module>:<callable>) or a callable "
                  "(messages, **params) -> str | Response")),
    ],
)
def test_llm_model_fixture_returning_no_model_is_a_clear_error(bot, returned, expected):
    bot.makeconftest(f"import pytest\n\n@pytest.fixture\ndef llm_model():\n    return {returned}\n")
    bot.makepyfile(test_a="def test_it(llm):\n    llm('hi')\n\ndef test_unaffected():\n    pass\n")
    result = bot.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert expected in out
    assert "Traceback" not in out and "INTERNALERROR" not in out


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("llm.chat('hi')", "llm.chat() takes a non-empty list of messages"),
        ("llm.chat([{'role': 'boss', 'content': 'x'}])", "message 0 has role 'boss'"),
        ("llm.sample('hi', 0)", "n must be an int >= 1, got 0"),
        ("llm('hi', temperature=9)", "llm() override: temperature must be >= 0 and <= 2, got 9"),
        ("llm('hi', model='py:bot:reply')", "the model cannot be overridden per call"),
    ],
)
def test_bad_calls_fail_with_a_clear_message(bot, call, expected):
    bot.makepyfile(
        test_a=dedent(
            f"""
            import pytest

            @pytest.mark.llm(model="py:bot:reply")
            def test_it(llm):
                {call}
            """
        )
    )
    result = bot.runpytest()
    result.assert_outcomes(failed=1)
    assert expected in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_plugin_can_be_switched_off(bot):
    bot.makepyfile(test_a="def test_it(llm):\n    pass\n")
    result = bot.runpytest("-p", "no:llmmetrics")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'llm' not found*"])
    assert "llmmetrics" not in bot.runpytest("-p", "no:llmmetrics", "--help").stdout.str()


def test_options_and_marker_are_documented(bot):
    help_text = bot.runpytest("--help").stdout.str()
    for flag in ("--llm-model", "--llm-embedding-model", "--llm-device", "--llm-record-mode",
                 "--llm-fail-on-regression", "--llm-baseline-update"):
        assert flag in help_text
    for ini in ("llm_model", "llm_embedding_model", "llm_device", "llm_similarity_threshold",
                "llm_record_mode", "llm_metrics_dir", "llm_fail_on_regression"):
        assert ini in help_text
    markers = bot.runpytest("--markers").stdout.str()
    assert "@pytest.mark.llm(model=None, system=None, temperature=0.0, max_tokens=256" in markers


def test_the_fingerprint_of_a_sample_call_is_the_call_as_written(bot, monkeypatch):
    import json

    bot.makepyfile(test_s=dedent(
        """
        import os
        import pytest

        @pytest.mark.llm(model="py:bot:reply", temperature=0.7)
        def test_samples(llm, llm_metrics):
            n, seed = int(os.environ.get("N", "10")), int(os.environ.get("SEED", "1"))
            llm_metrics.record("k", len(llm.sample("Say hi", n, seed=seed)), higher_is_better=True)
        """))
    bot.runpytest("--llm-baseline-update").assert_outcomes(passed=1)
    fingerprint = json.loads((bot.path / ".llmmetrics" / "baseline.json").read_text())["tests"][
        "test_s.py::test_samples"]["fingerprint"]
    assert json.loads(fingerprint["params"]) == {"max_tokens": 256, "samples": 10, "seed": 1, "temperature": 0.7}
    # n=5 from seed 6 ends on the same seed as n=10 from seed 1: a change of the call, not of the prompt.
    monkeypatch.setenv("N", "5")
    monkeypatch.setenv("SEED", "6")
    result = bot.runpytest()
    result.stdout.fnmatch_lines(["*test_samples*k*10*5*regressed*sampling parameters changed"])
    assert "prompt changed" not in result.stdout.str()
