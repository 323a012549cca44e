"""``--llm-timeout`` for every model kind: a model that hangs fails its test, and the run goes on.

The ``local`` model's own stopping (its generation and its lock) is tested in test_local.py.
"""

from __future__ import annotations

import contextvars
import threading

import pytest
from conftest import dedent

from pytest_llmmetrics.providers.call import run_with_timeout
from pytest_llmmetrics.replay import load

# A model that blocks until told to answer: a hang, with no timing in it.
HANG = '''
import threading

RELEASE = threading.Event()
ANSWERED = threading.Event()

def reply(messages, **params):
    RELEASE.wait(600)
    ANSWERED.set()
    return "a late answer"
'''


@pytest.fixture
def hang(bot: pytest.Pytester) -> pytest.Pytester:
    bot.makepyfile(hang=HANG)
    return bot


def clean(result: pytest.RunResult) -> str:
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out
    return out


def test_hung_py_model_fails_after_the_timeout_and_the_run_goes_on(run, hang):
    hang.makepyfile(
        test_a=dedent(
            """
            import pytest

            @pytest.mark.llm(model="py:hang:reply")
            def test_hangs(llm):
                llm("Are you there?")

            @pytest.mark.llm(model="py:bot:reply")
            def test_after(llm):
                assert llm("What is the capital of France?").text == "The capital of France is Paris."
            """
        )
    )
    result = run("--llm-timeout", "2")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*_ test_hangs _*", "model py:hang:reply gave no answer within 2 s (--llm-timeout / "
                                 "llm_timeout). The call cannot be stopped and was left running in the background*"])
    out = clean(result)
    assert "the run goes on" in out and "raise --llm-timeout / llm_timeout" in out


def test_timeout_comes_from_the_ini_file_and_applies_to_an_overridden_llm_model(run, hang):
    hang.makeini("[pytest]\nllm_timeout = 2\n")
    hang.makeconftest(
        dedent(
            """
            import pytest
            import hang

            class Stuck:
                def __call__(self, messages, **params):
                    return hang.reply(messages)

            @pytest.fixture
            def llm_model():
                return Stuck()
            """
        )
    )
    hang.makepyfile(test_a="def test_it(llm):\n    llm('hi')\n")
    result = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["model Stuck gave no answer within 2 s (--llm-timeout / llm_timeout)*"])
    clean(result)


def test_a_hung_sample_fails_the_sample_call_concurrent_or_not(run, bot):
    bot.makepyfile(
        sampler=dedent(
            """
            import threading

            RELEASE = threading.Event()

            class Sampler:
                '''Answers several requests at once; the one with seed 7 hangs.'''

                max_concurrency = 4

                def __call__(self, messages, seed=None, **params):
                    if seed == 7:
                        RELEASE.wait(600)
                    return f"sample {seed}"

            def one_at_a_time(messages, seed=None, **params):
                return Sampler()(messages, seed=seed)
            """
        ),
        test_a=dedent(
            """
            import pytest
            import sampler

            @pytest.mark.llm(seed=5)
            class TestConcurrent:
                @pytest.fixture
                def llm_model(self):
                    return sampler.Sampler()

                def test_concurrent(self, llm):
                    llm.sample("Name a colour.", n=4)

                @pytest.mark.llm(seed=1)
                def test_after(self, llm):
                    assert [r.text for r in llm.sample("Name a colour.", n=3)] == ["sample 1", "sample 2", "sample 3"]

            @pytest.mark.llm(model="py:sampler:one_at_a_time", seed=5)
            def test_sequential(llm):
                llm.sample("Name a colour.", n=4)
            """
        ),
    )
    result = run("--llm-timeout", "2")
    result.assert_outcomes(failed=2, passed=1)
    for test, model in [("TestConcurrent.test_concurrent", "Sampler"), ("test_sequential", "py:sampler:one_at_a_time")]:
        # One by one: under xdist the order is the order they ended in.
        result.stdout.fnmatch_lines([f"*_ {test} _*", f"model {model} gave no answer within 2 s*"])
    clean(result)


def test_a_timed_out_call_is_not_recorded_even_when_its_answer_comes_late(run, hang):
    hang.makepyfile(
        test_a=dedent(
            """
            import pytest
            import hang
            from pytest_llmmetrics import ModelError

            @pytest.mark.llm(model="py:hang:reply")
            def test_late(llm):
                with pytest.raises(ModelError, match="gave no answer within 2 s"):
                    llm("Are you there?")
                hang.RELEASE.set()  # now the abandoned call answers, after the test gave up on it
                assert hang.ANSWERED.wait(60)

            @pytest.mark.llm(model="py:bot:reply")
            def test_ok(llm):
                llm("What is the capital of France?")
            """
        )
    )
    result = run("--llm-timeout", "2", "--llm-record-mode", "all")
    result.assert_outcomes(passed=2)
    clean(result)
    recorded = load(hang.path / "__recordings__" / "test_a.llm.json")
    assert [(e["test"], e["messages"][-1]["content"]) for e in recorded.values()] == [
        ("test_a.py::test_ok", "What is the capital of France?")]


def test_run_with_timeout_returns_raises_or_gives_up():
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("the caller's")
    assert run_with_timeout(var.get, 10, "t") == "the caller's"  # the caller's context goes along

    def fail() -> None:
        raise KeyError("from the model")

    with pytest.raises(KeyError, match="from the model"):
        run_with_timeout(fail, 10, "t")
    release = threading.Event()
    with pytest.raises(TimeoutError, match="no answer within 0.01 s"):
        run_with_timeout(lambda: release.wait(600), 0.01, "t")
    release.set()


def test_a_timeout_of_zero_means_no_limit_and_calls_the_model_on_the_tests_thread(run, bot):
    bot.makepyfile(slowbot=dedent(
        """
        import threading
        import time

        def reply(messages, **params):
            time.sleep(0.3)
            return str(threading.get_ident())
        """), test_a=dedent(
        """
        import threading
        import pytest

        @pytest.mark.llm(model="py:slowbot:reply")
        def test_thread(llm):
            assert llm("hi").text == str(threading.get_ident())  # called on the test's own thread
        """))
    run("--llm-timeout", "0").assert_outcomes(passed=1)
    result = run("--llm-timeout", "0.1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gave no answer within 0.1 s (--llm-timeout / llm_timeout)*"])
    result = run("--llm-timeout", "-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "must be a number >= 0, e.g." in result.stderr.str()
