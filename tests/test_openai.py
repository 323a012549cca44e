"""``openai:<model>``: the real openai client against the real llama.cpp server, and against a fault injector."""

from __future__ import annotations

import email.utils
import inspect
import os
import random
import time

import pytest
from conftest import dedent
from servers import FaultServer, LlamaServer, refused_port

from pytest_llmmetrics.errors import ConfigError, ModelError
from pytest_llmmetrics.llm import LLM
from pytest_llmmetrics.markers import LLMSettings
from pytest_llmmetrics.providers.openai import (
    MAX_BACKOFF_S,
    Failure,
    OpenAIModel,
    backoff,
    classify,
    failure_message,
    gave_up,
    retry_after,
)
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


# --- retrying, the pure parts: what failed, how long to wait, what to say ------------------------

def http():
    """The HTTP library the installed openai client is built on, for building its errors as it does."""
    import openai._exceptions

    return next(m for m in vars(openai._exceptions).values()
                if inspect.ismodule(m) and m.__name__ in ("httpx", "httpx2"))


def status_error(status: int, headers: dict | None = None):
    import openai

    lib = http()
    request = lib.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    return openai.APIStatusError(f"scripted {status}", response=lib.Response(status, request=request,
                                                                              headers=headers or {}), body=None)


def test_classify_says_what_is_worth_another_attempt_and_when_the_server_is_down():
    import openai

    request = http().Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    timeout = classify(openai.APITimeoutError(request=request), openai)
    assert (timeout.kind, timeout.retryable, timeout.server_down) == ("timeout", True, True)
    refused = classify(openai.APIConnectionError(request=request), openai)
    assert (refused.kind, refused.retryable, refused.server_down) == ("unreachable", True, True)
    for status in (408, 409, 429, 500, 502, 503, 504):
        failure = classify(status_error(status, {"Retry-After": "3"}), openai)
        assert (failure.kind, failure.retryable, failure.server_down, failure.status) == ("status", True, False, status)
        assert retry_after(failure.headers) == 3.0  # the answer's headers, as case-insensitive as they came
    for status in (400, 401, 403, 404, 422):
        assert classify(status_error(status), openai).retryable is False
    unusable = classify(openai.APIError("not a chat completion", request, body=None), openai)
    assert (unusable.kind, unusable.retryable, unusable.server_down) == ("unusable", False, False)
    assert classify(ValueError("a bug of ours"), openai) is None


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after": "0"}, 0.0),
    ({"retry-after": "-4"}, 0.0),
    ({"retry-after": "120"}, 120.0),  # over a minute: read as it is; the caller fails at once
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the finer one wins
    ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),  # an unreadable one is skipped
    ({"retry-after": "soon"}, None),
    ({"retry-after": ""}, None),
    ({}, None),
])
def test_retry_after_in_seconds(headers, seconds):
    assert retry_after(headers) == seconds


def test_retry_after_as_an_http_date():
    now = 1_700_000_000.0
    assert retry_after({"retry-after": email.utils.formatdate(now + 30, usegmt=True)}, now=now) == 30.0
    assert retry_after({"retry-after": email.utils.formatdate(now + 90, usegmt=True)}, now=now) == 90.0
    assert retry_after({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now=now) == 0.0  # past
    assert retry_after({"retry-after": "Wed, 32 Foo 2024 99:00:00 GMT"}, now=now) is None
    # Without a time given, from the clock.
    assert 25 < retry_after({"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)}) <= 30


def test_retry_after_reads_the_headers_of_the_real_client_whatever_their_case():
    assert retry_after(http().Headers({"Retry-After": "7"})) == 7.0
    assert retry_after(http().Headers({"Retry-After-Ms": "700"})) == 0.7


def test_backoff_is_full_jitter_under_a_doubling_ceiling_of_at_most_30_s():
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (6, 16.0), (7, MAX_BACKOFF_S), (20, MAX_BACKOFF_S)]:
        waits = [backoff(attempt, 0.5, rng=rng) for _ in range(2000)]
        assert 0 <= min(waits) < ceiling * 0.01 and ceiling * 0.99 < max(waits) <= ceiling, attempt
    assert backoff(3, 0.0, rng=rng) == 0.0
    assert all(0 <= backoff(3, 1.0) <= 4.0 for _ in range(100))  # the module's own random by default
    # Seeded, it is reproducible: the same draw as random.uniform(0, ceiling).
    assert backoff(3, 1.0, rng=random.Random(7)) == random.Random(7).uniform(0, 4.0)


def test_backoff_after_retry_after_waits_at_least_what_the_server_asked_and_at_most_10_percent_more():
    rng = random.Random(2)
    waits = [backoff(1, 0.5, retry_after=2.0, rng=rng) for _ in range(2000)]
    assert 2.0 <= min(waits) < 2.01 and 2.19 < max(waits) <= 2.2
    assert backoff(5, 0.5, retry_after=0.0, rng=rng) == 0.0  # "now" means now, not the backoff


WHERE = "model 'openai:m' at http://127.0.0.1:9/v1"


@pytest.mark.parametrize(("failure", "attempt", "detail", "options", "message"), [
    (Failure("timeout", True), 2, "", {"timeout": 0.3},
     (f"{WHERE}: no answer within 0.3 s (2 attempts). The server is slow or stuck: check it, or raise "
      "--llm-timeout / llm_timeout")),
    (Failure("timeout", True), 1, "", {},
     (f"{WHERE}: no answer (1 attempt). The server is slow or stuck: check it, or raise --llm-timeout / "
      "llm_timeout")),
    (Failure("unreachable", True), 3, "Connection refused", {},
     (f"{WHERE}: cannot connect (Connection refused; 3 attempts). Is the server running? Start it, or point "
      "--llm-base-url / OPENAI_BASE_URL at it")),
    (Failure("status", True, 503), 3, "scripted 503", {},
     (f"{WHERE}: HTTP 503 (3 attempts): scripted 503. The server failed: check its logs, or allow more retries "
      "(--llm-max-retries / llm_max_retries)")),
    (Failure("status", True, 429), 1, "slow down", {"retry_after": 60.0},
     (f"{WHERE}: HTTP 429 (1 attempt): slow down. Rate limited: send fewer requests at once (llm_concurrency, -n), "
      "allow more retries (--llm-max-retries), or replay recorded replies (--llm-record-mode=none)")),
    (Failure("status", True, 429), 1, "slow down", {"retry_after": 120.0},
     (f"{WHERE}: HTTP 429: the server asks to retry after 120 s, longer than 60 s: slow down. Rate limited: send "
      "fewer requests at once (llm_concurrency, -n), allow more retries (--llm-max-retries), or replay recorded "
      "replies (--llm-record-mode=none)")),
    (Failure("status", False, 404), 1, "no such model", {"model": "m"},
     (f"{WHERE}: HTTP 404: no such model. Check the model name 'm' and the base URL (usually ending in /v1: "
      "--llm-base-url / OPENAI_BASE_URL)")),
    (Failure("status", False, 400), 1, "'temperature' does not support 0.0", {},
     (f"{WHERE}: HTTP 400: 'temperature' does not support 0.0. The model does not take this temperature "
      "(reasoning models take only 1): set it with @pytest.mark.llm(temperature=...) on the tests or in a "
      "conftest.py pytestmark")),
    (Failure("unusable", False), 1, "Expecting value", {},
     (f"{WHERE}: unusable answer: Expecting value. Is it an OpenAI-compatible Chat Completions server? Its base "
      "URL usually ends in /v1")),
], ids=["timeout", "timeout-unlimited", "unreachable", "5xx", "retry-after-60", "retry-after-over-60", "404",
        "400-temperature", "unusable"])
def test_failure_message(failure, attempt, detail, options, message):
    assert failure_message(failure, WHERE, attempt, detail, **options) == message


def test_gave_up_says_why_the_last_attempt_was_the_last():
    down, answered = Failure("unreachable", True), Failure("status", True, 503)
    assert gave_up(down, True, 2) == ("; not retried, as the server did not answer an earlier request either "
                                      "(each request gets one attempt until one is answered)")
    assert gave_up(down, False, 2) == "; gave up after 2 retries (--llm-max-retries / llm_max_retries)"
    assert gave_up(answered, True, 2) == "; gave up after 2 retries (--llm-max-retries / llm_max_retries)"
    assert gave_up(down, True, 0) == gave_up(answered, False, 0) == ""  # no retries allowed: nothing to explain


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

    server = LlamaServer.started(gguf_path(), tmp_path / "server.log")
    try:
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
        assert server.wait_seen(3, timeout=1) == 2  # both attempts reached it, and no third


def test_after_a_request_finds_the_server_down_the_next_get_one_attempt_until_one_is_answered():
    # wait_seen: each hung request has taken its script entry before the next is sent (a client that timed out
    # does not wait for the server to read its request). 1 s: time enough for the answered one on a busy machine.
    with FaultServer([("hang", 10)] * 3, default=("ok", "Paris.")) as server:
        m = model(server.base_url, timeout=1, max_retries=1)
        with pytest.raises(ModelError, match=r"no answer within 1 s \(2 attempts\).*gave up after 1 retries"):
            m(CAPITAL)
        server.wait_seen(2)
        with pytest.raises(ModelError, match=r"no answer within 1 s \(1 attempt\).*; not retried, as the server "
                                             r"did not answer an earlier request either"):
            m(CAPITAL)
        server.wait_seen(3)
        assert m(CAPITAL).text == "Paris."  # one attempt, answered: back to normal
        assert len(server.seen) == 4
        server.script.extend([("hang", 10)] * 2)
        with pytest.raises(ModelError, match=r"\(2 attempts\)"):
            m(CAPITAL)
        assert server.wait_seen(7, timeout=1) == 6


def test_connection_refused(refused):
    url = f"http://127.0.0.1:{refused}/v1"
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
    with FaultServer(script) as server, refused_port() as port:
        args = [a.format(port=port, url=server.base_url) for a in args]
        result = run("--llm-max-retries", "0", *args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([expected])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str()
