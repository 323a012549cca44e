"""``openai:<model>``: the real openai client against the real llama.cpp server, and against a fault injector."""

from __future__ import annotations

import os

import pytest
from conftest import dedent
from servers import FaultServer, LlamaServer, free_port

from pytest_llmmetrics.errors import ConfigError, ModelError
from pytest_llmmetrics.llm import LLM
from pytest_llmmetrics.markers import LLMSettings
from pytest_llmmetrics.providers.openai import OpenAIModel
from pytest_llmmetrics.providers.spec import ProviderOptions

pytest.importorskip("openai", reason="needs pytest-llmmetrics[openai]")

HELPFUL = {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."}
CAPITAL = [HELPFUL, {"role": "user", "content": "What is the capital of France?"}]
FAST = dict(timeout=5.0, max_retries=2, retry_backoff=0.01)


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-only-0123456789abcdef")


def model(base_url: str, **options) -> OpenAIModel:
    return OpenAIModel("smollm2", ProviderOptions(base_url=base_url, **{**FAST, **options}))


# --- the real llama.cpp server ---------------------------------------------------------

def test_real_server_through_the_openai_client(llama_server):
    reply = model(llama_server.base_url)(CAPITAL, temperature=0.0, max_tokens=32, seed=0)
    assert "Paris" in reply.text
    assert reply.model == "openai:smollm2"
    assert reply.prompt_tokens > 5 and 0 < reply.completion_tokens <= 32  # from the server's usage
    assert reply.finish_reason == "stop"
    assert reply.latency_s > 0


def test_suite_on_the_real_server(run, bot, llama_server):
    bot.makepyfile(
        test_a=dedent(
            """
            import pytest
            from pytest_llmmetrics import metrics

            pytestmark = pytest.mark.llm(model="openai:smollm2", system="You are a helpful assistant. Answer in one short sentence.",
                                         max_tokens=48, seed=0)

            def test_capital(llm, llm_metrics):
                reply = llm("What is the capital of France?")
                llm_metrics.expect(reply, metrics.contains("Paris"), metrics.tokens(max=48), metrics.not_truncated())

            def test_samples(llm, llm_metrics):
                replies = llm.sample("Name one colour.", n=3, temperature=0.9)
                assert [r.model for r in replies] == ["openai:smollm2"] * 3
                llm_metrics.expect(replies, metrics.word_count(min=1))
            """
        )
    )
    result = run("--llm-base-url", llama_server.base_url, "--llm-timeout", "60")
    result.assert_outcomes(passed=2)
    assert "llm metrics" in result.stdout.str()


def test_base_url_from_the_environment(bot, llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", llama_server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY")  # a local server needs no key
    bot.makeini("[pytest]\nllm_model = openai:smollm2\n")
    bot.makepyfile(test_a="def test_it(llm):\n    assert 'Paris' in llm.chat("
                          "[{'role': 'system', 'content': 'You are a helpful assistant. Answer in one short sentence.'},"
                          "{'role': 'user', 'content': 'What is the capital of France?'}]).text\n")
    bot.runpytest().assert_outcomes(passed=1)


def test_server_stopped_mid_suite(bot, tmp_path):
    """The server dies between tests: later tests fail with a clear message, after the first without retries."""
    from pytest_llmmetrics.providers.local import gguf_path

    server = LlamaServer(gguf_path(), tmp_path / "server.log")
    try:
        server.wait_ready()
        bot.makepyfile(
            test_a=dedent(
                f"""
                import os, signal, socket, time
                import pytest

                pytestmark = pytest.mark.llm(model="openai:smollm2", max_tokens=8)

                def test_1_before(llm):
                    assert llm("Say hi.").text

                def test_2_stop_the_server():
                    os.kill({server.proc.pid}, signal.SIGTERM)
                    for _ in range(300):
                        try:
                            socket.create_connection(("127.0.0.1", {server.port}), timeout=1).close()
                        except OSError:
                            return
                        time.sleep(0.1)
                    raise AssertionError("the server is still up")

                def test_3_after(llm):
                    llm("Say hi.")

                def test_4_after_that(llm):
                    llm("Say hi.")
                """
            )
        )
        result = bot.runpytest("--llm-base-url", server.base_url, "--llm-max-retries", "1",
                                          "-o", "llm_retry_backoff=0.05", "--llm-timeout", "5")
    finally:
        server.stop()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        f"*model 'openai:smollm2' at {server.base_url}: cannot connect (*; 2 attempts). Is the server running?*"
        "gave up after 1 retries*",
        f"*model 'openai:smollm2' at {server.base_url}: cannot connect (*; 1 attempt). Is the server running?*"
        "not retried, as the server did not answer an earlier request either*",
    ])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# --- faults, against a scripted loopback server -------------------------------------------

def test_500_then_200_retries_and_succeeds():
    with FaultServer([("status", 500)], default=("ok", "Paris.")) as server:
        reply = model(server.base_url)(CAPITAL, temperature=0.0)
    assert reply.text == "Paris."
    assert (reply.prompt_tokens, reply.completion_tokens) == (11, 5)
    assert len(server.seen) == 2


def test_429_waits_as_long_as_retry_after_says():
    with FaultServer([("status", 429, {"Retry-After": "1"})], default=("ok", "Paris.")) as server:
        reply = model(server.base_url, retry_backoff=0.0)(CAPITAL)
    assert reply.text == "Paris."
    first, second = server.seen
    assert second.at - first.at >= 1.0  # the backoff alone would retry at once


def test_retry_after_longer_than_a_minute_fails_at_once():
    with FaultServer(default=("status", 429, {"Retry-After": "120"})) as server:
        with pytest.raises(ModelError, match=r"HTTP 429: the server asks to retry after 120 s.*Rate limited"):
            model(server.base_url)(CAPITAL)
    assert len(server.seen) == 1


def test_5xx_until_the_retries_are_spent():
    with FaultServer(default=("status", 503)) as server:
        with pytest.raises(ModelError) as info:
            model(server.base_url, max_retries=2)(CAPITAL)
    assert len(server.seen) == 3
    message = str(info.value)
    assert f"model 'openai:smollm2' at {server.base_url}: HTTP 503 (3 attempts): scripted 503." in message
    assert "check its logs" in message and "gave up after 2 retries (--llm-max-retries / llm_max_retries)" in message


def test_hang_past_the_timeout():
    with FaultServer(default=("hang", 10)) as server:
        with pytest.raises(ModelError, match=r"no answer within 0.3 s \(2 attempts\).*--llm-timeout"):
            model(server.base_url, timeout=0.3, max_retries=1)(CAPITAL)
    assert len(server.seen) == 2


def test_after_a_request_finds_the_server_down_the_next_get_one_attempt_until_one_is_answered():
    with FaultServer([("hang", 5)] * 3, default=("ok", "Paris.")) as server:
        m = model(server.base_url, timeout=0.3, max_retries=1)
        with pytest.raises(ModelError, match=r"no answer within 0.3 s \(2 attempts\).*gave up after 1 retries"):
            m(CAPITAL)
        with pytest.raises(ModelError, match=r"no answer within 0.3 s \(1 attempt\).*; not retried, as the server "
                                             r"did not answer an earlier request either"):
            m(CAPITAL)
        assert m(CAPITAL).text == "Paris."  # one attempt, answered: back to normal
        assert len(server.seen) == 4
        server.script.extend([("hang", 5)] * 2)
        with pytest.raises(ModelError, match=r"\(2 attempts\)"):
            m(CAPITAL)
    assert len(server.seen) == 6


def test_connection_refused():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelError, match=r"cannot connect \(.*; 2 attempts\)\. Is the server running\? Start it, "
                                         r"or point --llm-base-url / OPENAI_BASE_URL at it"):
        model(url, max_retries=1)(CAPITAL)


@pytest.mark.parametrize(
    ("status", "advice"),
    [(401, r"set OPENAI_API_KEY to a valid key"), (404, "Check the model name 'smollm2' and the base URL"),
     (400, "check the test's @pytest.mark.llm parameters")],
)
def test_client_errors_are_not_retried(status, advice):
    with FaultServer(default=("status", status)) as server:
        with pytest.raises(ModelError, match=rf"HTTP {status}: scripted {status}.*{advice}"):
            model(server.base_url)(CAPITAL)
    assert len(server.seen) == 1


RENAMED = ("Unsupported parameter: 'max_tokens' is not supported with this model. "
           "Use 'max_completion_tokens' instead.")


def test_a_model_that_wants_max_completion_tokens_gets_it_without_spending_an_attempt():
    with FaultServer([("status", 400, {}, RENAMED)], default=("ok", "Paris.")) as server:
        m = model(server.base_url, max_retries=0)
        assert m(CAPITAL, max_tokens=32).text == "Paris."
        assert m(CAPITAL, max_tokens=16).text == "Paris."  # asked once, remembered
    first, second, third = (seen.body for seen in server.seen)
    assert first["max_tokens"] == 32 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 32 and "max_tokens" not in second
    assert third["max_completion_tokens"] == 16 and "max_tokens" not in third


def test_a_temperature_the_model_does_not_take_says_how_to_set_it():
    message = ("Unsupported value: 'temperature' does not support 0.0 with this model. "
               "Only the default (1) value is supported.")
    with FaultServer(default=("status", 400, {}, message)) as server:
        with pytest.raises(ModelError, match=r"HTTP 400: Unsupported value: 'temperature'.*reasoning models take only "
                                             r"1\): set it with @pytest.mark.llm\(temperature=...\)"):
            model(server.base_url)(CAPITAL, temperature=0.0)
    assert len(server.seen) == 1


def test_an_answer_that_is_not_json():
    with FaultServer(default=("garbage",)) as server:
        with pytest.raises(ModelError, match="unusable answer.*OpenAI-compatible"):
            model(server.base_url)(CAPITAL)


def test_key_is_sent_but_never_shown():
    key = os.environ["OPENAI_API_KEY"]
    with FaultServer(default=("status", 401)) as server:
        with pytest.raises(ModelError) as info:
            model(server.base_url)(CAPITAL)
    assert server.seen[0].headers["authorization"] == f"Bearer {key}"
    assert "incorrect API key provided: <redacted:OPENAI_API_KEY>" in str(info.value)  # the server quoted it
    assert key not in str(info.value)


def test_parameters_reach_the_server_and_unknown_ones_go_in_the_body():
    with FaultServer() as server:
        model(server.base_url)(CAPITAL, temperature=0.5, max_tokens=20, seed=3, stop=["\n"], top_k=7)
    body = server.seen[0].body
    assert body["model"] == "smollm2" and body["messages"] == CAPITAL
    assert (body["temperature"], body["max_tokens"], body["seed"], body["stop"], body["top_k"]) == (0.5, 20, 3, ["\n"], 7)


def test_no_key_and_no_server_says_what_to_set(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set. Set it to your key, or point --llm-base-url"):
        OpenAIModel("gpt-4o-mini", ProviderOptions())(CAPITAL)


def test_sample_sends_requests_concurrently_and_bounded():
    # The server holds every request until 3 are in flight: no timing decides the outcome.
    with FaultServer(default=("together", 3, 8, "Blue.")) as server:
        llm = LLM(model(server.base_url, concurrency=3), LLMSettings(model="openai:smollm2", seed=10))
        replies = llm.sample("Name a colour.", n=8, temperature=0.9)
    assert [r.text for r in replies] == ["Blue."] * 8
    assert server.most_in_flight == 3  # sent 3 at once (not 1 by 1), and llm_concurrency bounds it at 3
    assert sorted(s.body["seed"] for s in server.seen) == list(range(10, 18))


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ([], ["--llm-base-url", "http://127.0.0.1:{port}/v1"], "*cannot connect (*; 1 attempt). Is the server running?*"),
        ([("status", 500)] * 5, ["--llm-base-url", "{url}"], "*HTTP 500 (1 attempt): scripted 500. The server failed*"),
        ([("hang", 5)] * 5, ["--llm-base-url", "{url}", "--llm-timeout", "0.3"], "*no answer within 0.3 s (1 attempt)*"),
    ],
    ids=["refused", "500", "hang"],
)
def test_faults_fail_the_test_cleanly(run, bot, script, args, expected):
    bot.makepyfile(test_a=dedent(
        """
        import pytest

        @pytest.mark.llm(model="openai:m")
        def test_it(llm):
            llm("hi")

        def test_other():
            pass
        """
    ))
    with FaultServer(script) as server:
        args = [a.format(port=free_port(), url=server.base_url) for a in args]
        result = run("--llm-max-retries", "0", *args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([expected])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str()
