"""The ``allm`` fixture and async models: the same replies, recordings, timeouts and metrics as ``llm``."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import dedent
from servers import FaultServer

needs_local = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")

# An async model: sample i waits until `together` requests are in flight (or 5 s), so a test can see that
# allm.sample sends them at once whatever the timing.
ABOT = '''
import asyncio

IN_FLIGHT = 0
MOST = 0
together = 1
_changed = None

async def reply(messages, temperature=0.0, max_tokens=256, seed=None):
    global IN_FLIGHT, MOST, _changed
    _changed = _changed or asyncio.Condition()
    async with _changed:
        IN_FLIGHT += 1
        MOST = max(MOST, IN_FLIGHT)
        _changed.notify_all()
        try:
            await asyncio.wait_for(_changed.wait_for(lambda: MOST >= together), 5)
        except asyncio.TimeoutError:
            pass
    IN_FLIGHT -= 1
    return f"async answer to {messages[-1]['content']!r} (seed {seed})"

async def slow(messages, **params):
    await asyncio.sleep(30)
    return "too late"
'''


@pytest.fixture
def abot(bot: pytest.Pytester) -> pytest.Pytester:
    bot.makepyfile(abot=ABOT)
    return bot


def test_allm_in_pytest_asyncio_and_anyio_tests(run, bot):
    bot.makepyfile(test_a=dedent("""
        import pytest
        from pytest_llmmetrics import metrics

        pytestmark = pytest.mark.llm(model="py:bot:reply", seed=3)

        @pytest.mark.asyncio
        async def test_asyncio(allm, llm, llm_metrics):
            reply = await allm("What is the capital of France?")
            assert reply.text == llm("What is the capital of France?").text  # the same reply as the sync fixture
            assert reply.messages == ({"role": "user", "content": "What is the capital of France?"},)
            chat = await allm.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "echo"}])
            assert "'seed': 3" in chat.text and "Be brief." in chat.text
            samples = await allm.sample("echo", 3, temperature=0.5)
            assert ["'seed': %d" % s in r.text for r, s in zip(samples, (3, 4, 5))] == [True] * 3
            llm_metrics.expect(reply, metrics.contains("Paris"))

        @pytest.mark.anyio
        async def test_anyio(allm):
            assert "Paris" in (await allm("capital?")).text
        """))
    result = run("-v", "-p", "anyio")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_asyncio*contains[[]Paris]*"])


def test_async_models_under_both_fixtures_and_samples_sent_at_once(abot):
    abot.makeini("[pytest]\nllm_model = py:abot:reply\nllm_concurrency = 3\n")
    abot.makepyfile(test_a=dedent("""
        import pytest
        import abot

        def test_sync_fixture_runs_an_async_model(llm):
            assert llm("hi", seed=1).text == "async answer to 'hi' (seed 1)"

        @pytest.mark.asyncio
        async def test_sample_at_once(allm):
            abot.together = 3
            replies = await allm.sample("hi", 8, seed=10)
            assert [r.text for r in replies] == [f"async answer to 'hi' (seed {s})" for s in range(10, 18)]
            assert abot.MOST == 3  # 3 at once (not 1 by 1), and llm_concurrency bounds it at 3
        """))
    abot.runpytest("-p", "no:xdist").assert_outcomes(passed=2)


def test_timeouts_cancel_an_async_model(abot):
    abot.makepyfile(test_a=dedent("""
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.llm(model="py:abot:slow")
        async def test_slow(allm):
            await allm("hi")
        """))
    result = abot.runpytest("-p", "no:xdist", "--llm-timeout", "0.5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*model py:abot:slow gave no answer within 0.5 s (--llm-timeout / llm_timeout); "
                                 "the call was cancelled*"])


def test_recorded_by_allm_replayed_by_llm_and_back(run, bot):
    bot.makepyfile(test_a=dedent("""
        import pytest

        pytestmark = pytest.mark.llm(model="py:bot:reply")

        @pytest.mark.asyncio
        async def test_async(allm):
            assert "Paris" in (await allm("capital?")).text
            assert len(await allm.sample("hello", 2)) == 2
        """))
    bot.runpytest("-p", "no:xdist", "--llm-record-mode=new_episodes").assert_outcomes(passed=1)
    recorded = json.loads((bot.path / "__recordings__" / "test_a.llm.json").read_text())["recordings"]
    assert sorted(len(e["replies"]) for e in recorded) == [1, 2]
    bot.makepyfile(bot="def reply(messages, **params):\n    raise AssertionError('called')\n")  # replayed, not called
    run("--llm-record-mode=none").assert_outcomes(passed=1)
    bot.makepyfile(test_a=dedent("""
        import pytest

        pytestmark = pytest.mark.llm(model="py:bot:reply")

        def test_sync(llm):
            assert "Paris" in llm("capital?").text
        """))
    run("--llm-record-mode=none").assert_outcomes(passed=1)


def test_openai_uses_the_async_client_concurrently(bot):
    with FaultServer(default=("together", 3, 6, "Blue.")) as server:
        bot.makeini(f"[pytest]\nllm_model = openai:fault\nllm_base_url = {server.base_url}\nllm_concurrency = 3\n")
        bot.makepyfile(test_a=dedent("""
            import pytest

            @pytest.mark.asyncio
            async def test_it(allm):
                replies = await allm.sample("Name a colour.", 6, temperature=0.9, seed=1)
                assert [r.text for r in replies] == ["Blue."] * 6
                assert replies[0].model == "openai:fault" and replies[0].prompt_tokens == 11
            """))
        bot.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
    assert server.most_in_flight == 3
    assert {s.headers.get("x-stainless-async") for s in server.seen} == {"async:asyncio"}  # not the sync client
    assert sorted(s.body["seed"] for s in server.seen) == list(range(1, 7))


def test_openai_retries_under_allm(bot):
    with FaultServer([("status", 503), ("ok", "Recovered.")]) as server:
        bot.makeini(f"[pytest]\nllm_model = openai:fault\nllm_base_url = {server.base_url}\nllm_retry_backoff = 0\n")
        bot.makepyfile(test_a=dedent("""
            import pytest

            @pytest.mark.asyncio
            async def test_it(allm):
                assert (await allm("hi")).text == "Recovered."
            """))
        bot.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
    assert len(server.seen) == 2


@needs_local
def test_local_under_allm_gives_the_sync_reply(bot):
    bot.makepyfile(test_a=dedent("""
        import pytest

        pytestmark = pytest.mark.llm(model="local", max_tokens=12)

        @pytest.mark.asyncio
        async def test_it(allm, llm):
            reply = await allm("What is the capital of France?")
            assert reply.text == llm("What is the capital of France?").text and reply.completion_tokens > 0
        """))
    bot.runpytest("-p", "no:xdist").assert_outcomes(passed=1)


def test_a_failing_sample_fails_the_call_plainly(bot):
    bot.makepyfile(flaky=dedent("""
        async def reply(messages, seed=None, **params):
            if seed == 2:
                raise RuntimeError("the model fell over")
            return "fine"
        """))
    bot.makepyfile(test_a=dedent("""
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.llm(model="py:flaky:reply", seed=0)
        async def test_it(allm):
            await allm.sample("hi", 4)
        """))
    result = bot.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: the model fell over*"])
    assert "ExceptionGroup" not in result.stdout.str()


def test_allm_in_a_sync_test_is_an_error_not_a_silent_pass(bot):
    bot.makepyfile(test_a=dedent("""
        import pytest

        @pytest.mark.llm(model="py:bot:reply")
        def test_sync(allm):
            allm("hi")  # never awaited: would test nothing

        @pytest.mark.asyncio
        @pytest.mark.llm(model="py:bot:reply")
        async def test_bad_chat(allm):
            await allm.chat([])
        """))
    result = bot.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1, errors=1)  # the sync test errors at setup
    result.stdout.fnmatch_lines(["*test_sync is not async: allm's methods are coroutines to await in an async test*",
                                 "*allm.chat() takes a non-empty list of messages*; for a single prompt call "
                                 "await allm('Hi')*"])


def test_the_sync_fixture_runs_an_async_model_inside_a_running_loop(abot):
    """``llm`` in an async test, on the test's own thread (no timeout thread): the model runs on a loop of its own."""
    abot.makepyfile(test_a=dedent("""
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.llm(model="py:abot:reply", seed=4)
        async def test_it(llm):
            assert llm("hi").text == "async answer to 'hi' (seed 4)"
        """))
    abot.runpytest("-p", "no:xdist", "--llm-timeout", "0").assert_outcomes(passed=1)
