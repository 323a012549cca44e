"""Shared fixtures: a scripted model for plumbing tests, and scenario runs serial and under xdist."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import textwrap

import pytest
from hypothesis import settings

import pytest_llmmetrics
from pytest_llmmetrics import state

# The property tests: no per-example deadline (a loaded 2-core CI machine stalls now and then, and a stall
# is not a bug) and derandomized, so a run's examples are the same each time and a failure reproduces.
# HYPOTHESIS_PROFILE=explore runs fresh random examples.
settings.register_profile("suite", deadline=None, derandomize=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

# Every module of the package, imported once here. pytester's in-process runs drop from sys.modules
# what they imported, and the plugin imports its subsystems on first use: without this, a second
# in-process run would import a second `Check` class while `pytest_llmmetrics.metrics` still held the
# first. (A real process imports each module once, so this is about nesting runs only.)
for _module in pkgutil.walk_packages(pytest_llmmetrics.__path__, "pytest_llmmetrics."):
    importlib.import_module(_module.name)
# The same for the libraries with native extensions an inner run may load (NumPy, torch, the Rust
# tokenizers and safetensors, pydantic-core under openai, rpds under jsonschema): dropped after one
# in-process run, they refuse to load a second time ("cannot load module more than once per process").
for _library in ("numpy", "torch", "tokenizers", "safetensors", "openai", "jsonschema", "llama_cpp"):
    if importlib.util.find_spec(_library) is not None:
        importlib.import_module(_library)


def _warm_openai() -> None:
    """One refused request through each openai client: it imports its HTTP transport on the first request, and
    a transport imported inside one in-process run is dropped after it, so the next run's timeouts would be
    another module's exception classes than the ones the kept openai package catches."""
    import asyncio

    import openai
    from servers import refused_port

    ask = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}/v1"
        try:
            openai.OpenAI(api_key="x", base_url=url, max_retries=0, timeout=2).chat.completions.create(**ask)
        except openai.APIConnectionError:
            pass

        async def ask_async() -> None:
            try:
                await openai.AsyncOpenAI(api_key="x", base_url=url, max_retries=0, timeout=2
                                         ).chat.completions.create(**ask)
            except openai.APIConnectionError:
                pass

        asyncio.run(ask_async())


if importlib.util.find_spec("openai") is not None:
    _warm_openai()

# A scripted model: only plumbing, so a fake is fine here (real models: providers tests).
BOT = '''
from pytest_llmmetrics import Response

CALLS = []

def reply(messages, temperature=0.0, max_tokens=256, seed=None):
    CALLS.append((messages, temperature, max_tokens, seed))
    q = messages[-1]["content"].lower()
    if "capital" in q:
        return "The capital of France is Paris."
    if "json" in q:
        return '{"order": 42, "items": ["tea", "cake"], "total": 9.5}'
    if "echo" in q:
        return repr({"messages": messages, "temperature": temperature, "max_tokens": max_tokens, "seed": seed})
    if "hack" in q:
        return "I'm sorry, but I can't help with that."
    return "Hello! How can I help you today?"

def detailed(messages, **params):
    return Response(text="Short answer.", prompt_tokens=12, completion_tokens=3, finish_reason="stop")

def no_params(messages):
    return "no params: " + messages[-1]["content"]
'''


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """When this suite runs under xdist, inner pytest runs must not think they are xdist workers
    (syrupy, for one, then skips its report)."""
    # PYTEST_XDIST_WORKER_COUNT stays: the local model shares the cores by it, and an inner run in an
    # outer xdist worker must not take every core (llama.cpp's spinning threads crawl when oversubscribed).
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _reset_module_state():
    """Metrics made with @metric and prices live at module level: restore them per test."""
    restore = state.save()
    yield
    restore()


@pytest.fixture
def bot(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester dir with ``bot.py`` (a scripted model) importable as ``py:bot:reply``."""
    pytester.makepyfile(bot=BOT)
    pytester.syspathinsert()
    return pytester


@pytest.fixture(params=["serial", "xdist"])
def run(request: pytest.FixtureRequest, bot: pytest.Pytester):
    """Run pytest in the pytester dir, serially and with ``-n 2`` (every scenario runs both ways)."""

    def run(*args: str) -> pytest.RunResult:
        extra = ["-n", "2"] if request.param == "xdist" else ["-p", "no:xdist"]
        return bot.runpytest(*extra, *args)

    run.mode = request.param  # type: ignore[attr-defined]
    return run


@pytest.fixture
def refused():
    """A 127.0.0.1 port that refuses every connection during the test (`servers.refused_port`)."""
    from servers import refused_port

    with refused_port() as port:
        yield port


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """The real ``python -m llama_cpp.server`` serving the embedded GGUF on a free 127.0.0.1 port."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("needs llama-cpp-python[server] (pip install -e '.[test]')")
    from servers import LlamaServer

    from pytest_llmmetrics.providers.local import gguf_path

    server = LlamaServer.started(gguf_path(), tmp_path_factory.mktemp("llama-server") / "server.log")
    yield server
    server.stop()


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
