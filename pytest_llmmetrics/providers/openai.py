"""The ``openai:<model>`` provider: any OpenAI-compatible Chat Completions server, through the official client."""

from __future__ import annotations

import email.utils
import inspect
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_llmmetrics.errors import ConfigError, ModelError
from pytest_llmmetrics.providers.spec import ProviderOptions
from pytest_llmmetrics.redact import scrub
from pytest_llmmetrics.response import Response

# One async client per model per event loop run (an anyio RunVar, made on first use).
_ASYNC_CLIENTS: Any = None
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0
RETRIABLE_STATUS = frozenset({408, 409, 429})
INSTALL = "pip install 'pytest-llmmetrics[openai]'"
_NOT_COMPATIBLE = "Is it an OpenAI-compatible Chat Completions server? Its base URL usually ends in /v1"
# create() arguments that are ours, not a test's parameters.
_RESERVED = {"self", "messages", "model", "stream", "stream_options", "extra_headers", "extra_query",
             "extra_body", "timeout", "n"}


class OpenAIModel:
    """``(messages, **params) -> Response`` through ``openai.OpenAI().chat.completions.create``.

    Where the server is: ``--llm-base-url`` / ``llm_base_url``, else
    ``$OPENAI_BASE_URL``, else OpenAI's own API. The key: ``$OPENAI_API_KEY``; a
    server given by URL may need none (llama.cpp, vLLM and Ollama by default).

    Failures the server may recover from -- HTTP 429, 408, 409 and 5xx, timeouts
    and connection errors -- are retried up to ``llm_max_retries`` times with
    exponential backoff (``llm_retry_backoff`` seconds, doubling, at most 30 s)
    and full jitter; a retryable answer with ``Retry-After`` (or ``retry-after-ms``) waits what the server asks
    (up to 60 s; a longer wait fails at once). The client's own retries are off,
    so these settings are the only ones. When the retries are spent, the error
    names the server, what it answered and what to do. Once a request has spent
    its retries without reaching the server (connection errors or timeouts: it
    is down or stuck), later requests get one attempt each until one is answered,
    so a suite against a stopped server fails test by test in seconds, not in
    minutes of backoff. ``latency_s`` is the time of the answered request,
    without earlier failed attempts and waits.

    Models that refuse ``max_tokens`` and ask for ``max_completion_tokens``
    instead (OpenAI's reasoning models) get it under that name from then on,
    without costing an attempt. Likewise a server that refuses a
    ``json_schema`` response format (a judge's) gets the next simpler form.

    The client is made on the first call, so importing ``openai`` costs a suite
    nothing until a test talks to a server; it is shared by the threads that
    ``llm.sample`` uses to send requests concurrently (``llm_concurrency``).
    """

    enforces_timeout = True  # the client waits llm_timeout per attempt, between retries: call it directly
    is_async = True  # under allm: the official async client

    def __init__(self, name: str, options: ProviderOptions) -> None:
        self.name = name
        self.spec = f"openai:{name}"
        self.options = options
        self.max_concurrency = options.concurrency
        self._client: Any = None
        self._openai: Any = None
        self._known: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._unreachable = False  # an earlier request spent its retries without reaching the server
        self._max_tokens_name = "max_tokens"  # or "max_completion_tokens", once the server asked for it
        self._format_level = 0  # index into _FORMATS: how much of a JSON-schema response_format the server takes

    def __repr__(self) -> str:
        return f"<model {self.spec}>"

    @property
    def base_url(self) -> str:
        return self.options.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def _connect(self) -> Any:
        with self._lock:
            if self._client is not None:
                return self._client
            try:
                import openai
            except ImportError as exc:
                raise ConfigError(f"model {self.spec!r} needs the openai package ({exc}): {INSTALL}") from None
            key = os.environ.get("OPENAI_API_KEY")
            if not key:
                if not (self.options.base_url or os.environ.get("OPENAI_BASE_URL")):
                    raise ConfigError(
                        f"model {self.spec!r}: OPENAI_API_KEY is not set. Set it to your key, or point "
                        "--llm-base-url / OPENAI_BASE_URL at a server that needs none"
                    )
                key = "no-key"  # a local server without auth ignores it; the client insists on one
            client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.options.timeout,
                                   max_retries=0)
            self._known = frozenset(inspect.signature(client.chat.completions.create).parameters) - _RESERVED
            self._openai = openai
            self._client = client
            return client

    def _request(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
        known = {k: v for k, v in params.items() if k in self._known}
        extra = {k: v for k, v in params.items() if k not in self._known}  # server-specific, e.g. top_k
        if "max_tokens" in known and self._max_tokens_name != "max_tokens":
            known[self._max_tokens_name] = known.pop("max_tokens")
        wanted_format = known.get("response_format")
        if self._format_level and wanted_format is not None:
            known["response_format"] = _simpler_format(wanted_format, self._format_level)
        request = dict(model=self.name, messages=[dict(m) for m in messages], **known)
        if extra:
            request["extra_body"] = extra
        return request

    def _next_wait(self, exc: Exception, request: dict[str, Any], wanted_format: Any, attempt: int, attempts: int,
                   down: bool) -> float | None:
        """After a failed attempt: None to resend now (same attempt), else seconds to wait (or raise: it is over)."""
        if self._wants_max_completion_tokens(exc, request) or self._wants_simpler_format(exc, request, wanted_format):
            return None
        return self._retry_wait(exc, attempt, attempts, down)

    def _plan(self, messages: Sequence[Mapping[str, str]], params: dict[str, Any]
              ) -> tuple[dict[str, Any], Any, bool, int]:
        """What a call sends and how often it may try (the sync and async loops share it): the request, the
        response format asked for, whether the server was unreachable (then one attempt), the attempts."""
        down = self._unreachable
        return (self._request(messages, params), params.get("response_format"), down,
                1 if down else self.options.max_retries + 1)

    def __call__(self, messages: Sequence[Mapping[str, str]], **params: Any) -> Response:
        client = self._connect()
        request, wanted_format, down, attempts = self._plan(messages, params)
        attempt = 1
        while True:
            start = time.perf_counter()
            try:
                completion = client.chat.completions.create(**request)
            except Exception as exc:  # noqa: BLE001 -- sorted into retry / clear error just below
                wait = self._next_wait(exc, request, wanted_format, attempt, attempts, down)
                if wait is not None:
                    time.sleep(wait)
                    attempt += 1
                continue
            self._unreachable = False
            return self._response(completion, time.perf_counter() - start)

    async def acall(self, messages: Sequence[Mapping[str, str]], **params: Any) -> Response:
        """The same request through the official async client (``allm``), with the same retries."""
        import anyio

        self._connect()  # the settings, the key check and the parameter names; the async client is per event loop
        client = self._async_client()
        request, wanted_format, down, attempts = self._plan(messages, params)
        attempt = 1
        while True:
            start = time.perf_counter()
            try:
                completion = await client.chat.completions.create(**request)
            except Exception as exc:  # noqa: BLE001 -- sorted into retry / clear error just below
                wait = self._next_wait(exc, request, wanted_format, attempt, attempts, down)
                if wait is not None:
                    await anyio.sleep(wait)
                    attempt += 1
                continue
            self._unreachable = False
            return self._response(completion, time.perf_counter() - start)

    def _async_client(self) -> Any:
        """``openai.AsyncOpenAI`` for this model on the running event loop (its connections belong to that loop)."""
        global _ASYNC_CLIENTS
        if _ASYNC_CLIENTS is None:
            import anyio.lowlevel

            _ASYNC_CLIENTS = anyio.lowlevel.RunVar("pytest_llmmetrics_openai_clients")
        clients = _ASYNC_CLIENTS.get(None)
        if clients is None:
            clients = {}
            _ASYNC_CLIENTS.set(clients)
        client = clients.get(self.spec + " " + self.base_url)
        if client is None:
            client = clients[self.spec + " " + self.base_url] = self._openai.AsyncOpenAI(
                api_key=self._client.api_key, base_url=self.base_url, timeout=self.options.timeout, max_retries=0)
        return client

    def _wants_max_completion_tokens(self, exc: Exception, request: dict[str, Any]) -> bool:
        """A 400 asking for ``max_completion_tokens`` instead of ``max_tokens``: rename it, here and from now on."""
        if not (isinstance(exc, self._openai.BadRequestError) and "max_tokens" in request
                and "max_completion_tokens" in _error_text(exc)):
            return False
        self._max_tokens_name = "max_completion_tokens"
        request["max_completion_tokens"] = request.pop("max_tokens")
        return True

    def _wants_simpler_format(self, exc: Exception, request: dict[str, Any], wanted: Any) -> bool:
        """A 400/422/500 about a JSON-schema ``response_format``: send the next simpler form, here and from now on.

        ``{"type": "json_schema", ...}`` (OpenAI, vLLM, Ollama, llama.cpp's C++ server) ->
        ``{"type": "json_object", "schema": ...}`` (llama-cpp-python's server) -> ``{"type": "json_object"}``.
        """
        sent = _format_level(request.get("response_format"))
        if not (isinstance(wanted, Mapping) and wanted.get("type") == "json_schema" and sent < len(_FORMATS) - 1):
            return False
        status = getattr(exc, "status_code", None) if isinstance(exc, self._openai.APIStatusError) else None
        text = (_error_text(exc) + " " + str(exc)).lower()
        # llama-cpp-python's server answers a response_format it cannot parse with a 500 that names it.
        about_format = "response_format" in text or (status != 500 and "schema" in text)
        if status not in (400, 422, 500) or not about_format:
            return False
        with self._lock:  # samples fail at once: each steps down from what it sent, never past the next form
            self._format_level = max(self._format_level, sent + 1)
            level = self._format_level
        request["response_format"] = _simpler_format(wanted, level)
        return True

    def _retry_wait(self, exc: Exception, attempt: int, attempts: int, down: bool) -> float:
        """Seconds to wait before the next attempt, or raise the `ModelError` that ends the call.

        ``down``: the server was unreachable for an earlier request, so this one gets one attempt.
        """
        failure = classify(exc, self._openai)
        if failure is None or not failure.server_down:
            self._unreachable = False  # it answered, if not well (or failed before reaching it)
        if failure is None:
            raise exc  # not the client's error: shown as it is
        wait = retry_after(failure.headers) if failure.retryable else None
        message = failure_message(failure, f"model {self.spec!r} at {self.base_url}", attempt, _detail(failure, exc),
                                  model=self.name, timeout=self.options.timeout, retry_after=wait)
        if not failure.retryable or (wait is not None and wait > MAX_RETRY_AFTER_S):
            raise ModelError(message) from None
        if attempt >= attempts:
            self._unreachable = failure.server_down
            raise ModelError(message + gave_up(failure, down, self.options.max_retries)) from None
        return backoff(attempt, self.options.retry_backoff, wait)

    def _response(self, completion: Any, latency: float) -> Response:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ModelError(f"model {self.spec!r} at {self.base_url}: unusable answer, not a chat completion: "
                             f"{_redact(repr(completion))[:200]}. {_NOT_COMPATIBLE}")
        choice = choices[0]
        usage = getattr(completion, "usage", None)
        return Response(
            text=getattr(choice.message, "content", None) or "",
            model=self.spec,
            latency_s=latency,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            finish_reason=choice.finish_reason,
            raw=completion,
        )


# --- retries, as pure functions: what failed, how long to wait, what to say -------------------

@dataclass(frozen=True)
class Failure:
    """A failed request as retrying sees it.

    ``kind``: ``timeout`` or ``unreachable`` (the server was not reached: it is
    down or stuck), ``status`` (an HTTP error: ``status`` its code, ``headers``
    those of the answer) or ``unusable`` (an answer that is not a chat completion).
    """

    kind: Literal["timeout", "unreachable", "status", "unusable"]
    retryable: bool  # the server may recover from it: worth another attempt
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def server_down(self) -> bool:
        return self.kind in ("timeout", "unreachable")


def classify(exc: BaseException, openai: Any) -> Failure | None:
    """What ``exc`` from the ``openai`` client says about the server; ``None`` for an error that is not the client's."""
    if isinstance(exc, openai.APITimeoutError):  # an APIConnectionError too: first
        return Failure("timeout", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return Failure("unreachable", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return Failure("status", retryable=status in RETRIABLE_STATUS or status >= 500, status=status,
                       headers=exc.response.headers)
    if isinstance(exc, openai.APIError):
        return Failure("unusable", retryable=False)
    return None


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if present.

    ``now``: the time an HTTP date is counted from (default: the clock).
    """
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff(attempt: int, base: float, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt``.

    What the server asked (``retry_after``) and up to 10 % more, else full
    jitter under ``base`` doubling with each attempt, at most 30 s: clients
    that failed together do not all come back at the same moment.
    """
    uniform = rng.uniform if rng is not None else random.uniform
    if retry_after is not None:
        return retry_after * uniform(1.0, 1.1)  # at least what the server asked
    return uniform(0, min(MAX_BACKOFF_S, base * 2 ** (attempt - 1)))


def failure_message(failure: Failure, where: str, attempt: int, detail: str = "", *, model: str = "",
                    timeout: float | None = None, retry_after: float | None = None) -> str:
    """What went wrong, for the person reading the CI log: the server, what it answered, what to do.

    ``where`` names the model and the server; ``attempt`` is the number of
    the attempt that failed; ``detail`` is what the error says (keys already
    redacted); ``retry_after`` is what the server asked to wait.
    """
    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
    if failure.kind == "timeout":
        limit = f" within {timeout:g} s" if timeout is not None else ""
        return (f"{where}: no answer{limit} ({tries}). The server is slow or stuck: check it, or raise "
                "--llm-timeout / llm_timeout")
    if failure.kind == "unreachable":
        return (f"{where}: cannot connect ({detail}; {tries}). Is the server running? "
                "Start it, or point --llm-base-url / OPENAI_BASE_URL at it")
    if failure.kind == "unusable":
        return f"{where}: unusable answer: {detail}. {_NOT_COMPATIBLE}"
    status = failure.status or 0
    if not failure.retryable:
        return f"{where}: HTTP {status}: {detail}. {_advice(status, model, detail)}"
    if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
        return (f"{where}: HTTP {status}: the server asks to retry after {retry_after:g} s, longer than "
                f"{MAX_RETRY_AFTER_S:g} s: {detail}. {_advice(status, model)}")
    return f"{where}: HTTP {status} ({tries}): {detail}. {_advice(status, model)}"


def gave_up(failure: Failure, down: bool, max_retries: int) -> str:
    """Why the last attempt was the last, said after `failure_message` when the retries are spent.

    ``down``: the server was unreachable for an earlier request, so this one had one attempt.
    """
    if failure.server_down and down and max_retries:
        return ("; not retried, as the server did not answer an earlier request either "
                "(each request gets one attempt until one is answered)")
    if max_retries:
        return f"; gave up after {max_retries} retries (--llm-max-retries / llm_max_retries)"
    return ""


def _detail(failure: Failure, exc: BaseException) -> str:
    """What ``exc`` says, keys redacted: the cause of a failed connection, the server's message, the bad answer."""
    if failure.kind == "unreachable":
        return _redact(str(exc.__cause__ or exc))
    if failure.kind == "status":
        return _redact(_error_text(exc))
    if failure.kind == "unusable":
        return _redact(str(exc))
    return ""


# The forms of a JSON-schema response_format, richest first (see OpenAIModel._wants_simpler_format).
_FORMATS = ("json_schema", "json_object with schema", "json_object")


def _format_level(sent: Any) -> int:
    """Which of `_FORMATS` a response_format is (0 for anything else)."""
    if isinstance(sent, Mapping) and sent.get("type") == "json_object":
        return 1 if "schema" in sent else 2
    return 0


def _simpler_format(wanted: Any, level: int) -> Any:
    """``wanted`` (a ``json_schema`` response_format) in the form ``_FORMATS[level]``; other formats as they are."""
    if not isinstance(wanted, Mapping) or wanted.get("type") != "json_schema" or level == 0:
        return wanted
    spec = wanted.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if level == 1 and schema is not None:
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else inner
        if message:
            return str(message)[:300]
    return (getattr(exc, "message", None) or str(exc))[:300]


def _advice(status: int, model: str, detail: str = "") -> str:
    if status == 400 and "temperature" in detail.lower():
        return ("The model does not take this temperature (reasoning models take only 1): set it with "
                "@pytest.mark.llm(temperature=...) on the tests or in a conftest.py pytestmark")
    if status in (401, 403):
        return "The server refused the key: set OPENAI_API_KEY to a valid key for this server"
    if status == 404:
        return (f"Check the model name {model!r} and the base URL (usually ending in /v1: "
                "--llm-base-url / OPENAI_BASE_URL)")
    if status == 429:
        return ("Rate limited: send fewer requests at once (llm_concurrency, -n), allow more retries "
                "(--llm-max-retries), or replay recorded replies (--llm-record-mode=none)")
    if status >= 500 or status in RETRIABLE_STATUS:
        return "The server failed: check its logs, or allow more retries (--llm-max-retries / llm_max_retries)"
    return "The server rejected the request: check the test's @pytest.mark.llm parameters"


def _redact(text: str) -> str:
    """Never show a key, even where a server or library echoes it (short keys of local servers too)."""
    key = os.environ.get("OPENAI_API_KEY")
    if key and len(key) >= 4:
        text = text.replace(key, "<redacted:OPENAI_API_KEY>")
    return str(scrub(text))
