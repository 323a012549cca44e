"""Built-in micro-metric checks: ``from pytest_llmmetrics import metrics``.

Every function returns a `Check`: a metric name, a function of the reply and a
threshold. Pass checks to ``llm_metrics.expect(reply, *checks)``, which records
each value and fails the test once, listing every check that missed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_llmmetrics import state
from pytest_llmmetrics.checks import detectors
from pytest_llmmetrics.checks.check import Check, Measurement
from pytest_llmmetrics.checks.judge import judge
from pytest_llmmetrics.errors import ConfigError, MetricError
from pytest_llmmetrics.redact import scrub
from pytest_llmmetrics.response import Response
from pytest_llmmetrics.semantic.engine import check_threshold, get_engine
from pytest_llmmetrics.values import number_problem

__all__ = [
    "contains",
    "not_contains",
    "matches",
    "starts_with",
    "ends_with",
    "word_count",
    "char_count",
    "is_json",
    "json_equals",
    "latency",
    "tokens",
    "cost",
    "no_refusal",
    "refusal",
    "no_pii",
    "no_markdown",
    "language",
    "not_truncated",
    "no_prompt_leak",
    "similarity",
    "judge",
    "set_price",
    "NOT_CHECKS",
]
# Names in __all__ that are helpers, not checks (kept out of the metric registry).
NOT_CHECKS = frozenset({"set_price", "NOT_CHECKS"})


def _label(kind: str, *args: object) -> str:
    """``contains[Paris]``: the metric name shows what is checked, shortened."""
    parts = []
    for arg in args:
        text = arg if isinstance(arg, str) else repr(arg)
        text = " ".join(scrub(text).split())  # redacted before it is shortened: no half secret survives
        parts.append(text if len(text) <= 30 else text[:29] + "\u2026")
    return f"{kind}[{','.join(parts)}]" if parts else kind


def _bound(name: str, kind: str, value: float | None, *, positive: bool = False) -> float | None:
    if value is None:
        return None
    problem = number_problem(value, 0, lo_open=positive)
    if problem:
        raise ConfigError(f"{kind}: {name} {problem}")
    return value


def _texts(kind: str, texts: Sequence[str]) -> tuple[str, ...]:
    if not texts:
        raise ConfigError(f"{kind}() needs at least one text to look for, e.g. {kind}('Paris')")
    for text in texts:
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{kind}: {text!r} is not a non-empty string")
    return tuple(texts)


# --- text content --------------------------------------------------------------------


def contains(*texts: str, ignore_case: bool = False, require: str = "all") -> Check:
    """The reply contains every one of ``texts`` (``require="any"``: at least one).

    Value: the fraction of ``texts`` found.
    """
    needles = _texts("contains", texts)
    if require not in ("all", "any"):
        raise ConfigError(f"contains: require={require!r} must be 'all' or 'any'")

    def measure(reply: Response) -> Measurement:
        hay = reply.text.lower() if ignore_case else reply.text
        missing = [t for t in needles if (t.lower() if ignore_case else t) not in hay]
        value = (len(needles) - len(missing)) / len(needles)
        return Measurement(value, f"missing: {', '.join(map(repr, missing))}" if missing else "")

    minimum = 1.0 if require == "all" else 1.0 / len(needles)
    return Check(_label("contains", *needles), measure, min=minimum, boolean=len(needles) == 1)


def not_contains(*texts: str, ignore_case: bool = False) -> Check:
    """None of ``texts`` appears in the reply. Value: how many of them do."""
    needles = _texts("not_contains", texts)

    def measure(reply: Response) -> Measurement:
        hay = reply.text.lower() if ignore_case else reply.text
        found = [t for t in needles if (t.lower() if ignore_case else t) in hay]
        return Measurement(len(found), f"found: {', '.join(map(repr, found))}" if found else "")

    return Check(_label("not_contains", *needles), measure, max=0, higher_is_better=False)


def matches(pattern: str, *, flags: int = 0, fullmatch: bool = False) -> Check:
    """The reply matches the regular expression (``re.search``; ``fullmatch=True`` for the whole text)."""
    try:
        regex = re.compile(pattern, flags)
    except (re.error, TypeError) as exc:
        raise ConfigError(f"matches: {pattern!r} is not a valid regular expression: {exc}") from None

    def measure(reply: Response) -> bool:
        text = reply.text.strip() if fullmatch else reply.text
        return bool(regex.fullmatch(text) if fullmatch else regex.search(text))

    return Check(_label("matches", pattern), measure, min=1, boolean=True)


def starts_with(prefix: str, *, ignore_case: bool = False) -> Check:
    """The reply, leading whitespace stripped, starts with ``prefix``."""
    (prefix,) = _texts("starts_with", [prefix])

    def measure(reply: Response) -> bool:
        text = reply.text.lstrip()
        return text.lower().startswith(prefix.lower()) if ignore_case else text.startswith(prefix)

    return Check(_label("starts_with", prefix), measure, min=1, boolean=True)


def ends_with(suffix: str, *, ignore_case: bool = False) -> Check:
    """The reply, trailing whitespace stripped, ends with ``suffix``."""
    (suffix,) = _texts("ends_with", [suffix])

    def measure(reply: Response) -> bool:
        text = reply.text.rstrip()
        return text.lower().endswith(suffix.lower()) if ignore_case else text.endswith(suffix)

    return Check(_label("ends_with", suffix), measure, min=1, boolean=True)


def _count_check(kind: str, count: Any, min: float | None, max: float | None, higher_is_better: bool | None) -> Check:
    lo, hi = _bound("min", kind, min), _bound("max", kind, max)
    # The direction follows the bounds (only max: shorter is better); with both or none there is none.
    return Check(kind, lambda reply: count(reply.text), min=lo, max=hi, higher_is_better=higher_is_better)


def word_count(*, min: int | None = None, max: int | None = None, higher_is_better: bool | None = None) -> Check:
    """Number of whitespace-separated words.

    Direction: shorter is better with only ``max``, longer with only ``min``;
    with both or neither there is none (a move is *changed*) unless
    ``higher_is_better`` says so.
    """
    return _count_check("word_count", lambda text: len(text.split()), min, max, higher_is_better)


def char_count(*, min: int | None = None, max: int | None = None, higher_is_better: bool | None = None) -> Check:
    """Number of characters, surrounding whitespace excluded."""
    return _count_check("char_count", lambda text: len(text.strip()), min, max, higher_is_better)


# --- structure -------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def _parse_json(text: str, strip_fences: bool) -> tuple[Any, str]:
    """``(data, "")`` or ``(None, why it is not JSON)``."""
    if strip_fences:
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def is_json(schema: Mapping[str, Any] | None = None, *, strip_fences: bool = False) -> Check:
    """The reply parses as JSON and, with ``schema``, validates against that JSON Schema.

    ``strip_fences=True`` accepts a reply wrapped in one markdown code fence.
    """
    validator = None
    if schema is not None:
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"is_json: the schema is not a valid JSON Schema: {exc.message}") from None
        validator = cls(schema)

    def measure(reply: Response) -> Measurement:
        data, error = _parse_json(reply.text, strip_fences)
        if error:
            return Measurement(0, error)
        if validator is not None:
            problems = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
            if problems:
                lines = [f"at {p.json_path}: {p.message}" for p in problems[:5]]
                return Measurement(0, "schema: " + "; ".join(lines))
        return Measurement(1)

    return Check("is_json", measure, min=1, boolean=True)


def _deepdiff_path(path: str) -> str:
    """``items[0].sku`` -> ``root['items'][0]['sku']``; deepdiff paths pass unchanged."""
    if path.startswith("root"):
        return path
    out = "root"
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        out += part if part.startswith("[") else f"[{part!r}]"
    return out


def json_equals(
    expected: Any,
    *,
    ignore_order: bool = True,
    tolerance: float = 0.0,
    exclude_paths: Iterable[str] = (),
    strip_fences: bool = False,
) -> Check:
    """The reply is JSON structurally equal to ``expected`` (deepdiff).

    ``ignore_order`` ignores list order; ``tolerance`` is an absolute tolerance
    for numbers; ``exclude_paths`` skips fields, written ``"order.id"``,
    ``"items[0].note"`` or in deepdiff's ``"root['order']['id']"`` form. A miss
    shows deepdiff's paths.
    """
    _bound("tolerance", "json_equals", tolerance)
    excluded = [_deepdiff_path(p) for p in exclude_paths]

    def measure(reply: Response) -> Measurement:
        from deepdiff import DeepDiff

        data, error = _parse_json(reply.text, strip_fences)
        if error:
            return Measurement(0, error)
        diff = DeepDiff(
            expected,
            data,
            ignore_order=ignore_order,
            math_epsilon=tolerance or None,
            exclude_paths=excluded,
            ignore_numeric_type_changes=True,
            verbose_level=2,
        )
        if not diff:
            return Measurement(1)
        return Measurement(0, "differences (expected -> reply):\n" + diff.pretty())

    return Check("json_equals", measure, min=1, boolean=True)


# --- speed, size, money ---------------------------------------------------------------


def _needs(reply: Response, field: str, kind: str) -> Any:
    value = getattr(reply, field)
    if value is None:
        raise MetricError(
            f"{kind}: the reply has no {field} (model {reply.model or 'unknown'!r}). Pass the Response "
            "returned by llm(...), not its text; a py: model must return a Response with this field set."
        )
    return value


def latency(*, max: float | None = None) -> Check:
    """Seconds the model took for the reply (recorded latency when replayed)."""
    return Check(
        "latency_s",
        lambda reply: _needs(reply, "latency_s", "latency"),
        max=_bound("max", "latency", max, positive=True),
        higher_is_better=False,
    )


_TOKEN_FIELDS = {"completion": "completion_tokens", "prompt": "prompt_tokens", "total": "total_tokens"}


def tokens(*, max: int | None = None, min: int | None = None, which: str = "completion") -> Check:
    """Token count of the reply: ``which`` is ``completion`` (default), ``prompt`` or ``total``."""
    if which not in _TOKEN_FIELDS:
        raise ConfigError(f"tokens: which={which!r} must be one of {', '.join(_TOKEN_FIELDS)}")
    field = _TOKEN_FIELDS[which]
    name = "tokens" if which == "completion" else f"tokens[{which}]"
    return Check(
        name,
        lambda reply: _needs(reply, field, "tokens"),
        min=_bound("min", "tokens", min),
        max=_bound("max", "tokens", max),
        higher_is_better=False,
        kind="tokens",
    )


def set_price(model: str, *, input_per_mtok: float, output_per_mtok: float) -> None:
    """Set the price of ``model`` in USD per million prompt/completion tokens, for `cost`.

    ``model`` is the spec (``openai:gpt-4o-mini``) or the bare model name.
    """
    _bound("input_per_mtok", "set_price", input_per_mtok)
    _bound("output_per_mtok", "set_price", output_per_mtok)
    state.PRICES[model] = (float(input_per_mtok), float(output_per_mtok))


def _price(model: str, prices: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    found = state.price_of(model, prices)
    if found is not None:
        return found
    bare = model.split(":", 1)[1] if ":" in model else model
    raise MetricError(
        f"cost: no price for model {model!r}. Set it once, e.g. in conftest.py: "
        f"pytest_llmmetrics.metrics.set_price({bare!r}, input_per_mtok=0.15, output_per_mtok=0.60), "
        "or pass cost(prices={...})."
    )


def cost(*, max: float | None = None, prices: Mapping[str, tuple[float, float]] | None = None) -> Check:
    """USD cost of the reply from its token counts and a price table (see `set_price`)."""

    def measure(reply: Response) -> float:
        p_in, p_out = _price(reply.model, state.PRICES if prices is None else prices)
        prompt = _needs(reply, "prompt_tokens", "cost")
        completion = _needs(reply, "completion_tokens", "cost")
        return float(prompt * p_in + completion * p_out) / 1_000_000

    return Check("cost_usd", measure, max=_bound("max", "cost", max), higher_is_better=False, kind="cost")


# --- behaviour and safety ----------------------------------------------------------------


def no_refusal() -> Check:
    """The model did not refuse (for prompts it must answer)."""

    def measure(reply: Response) -> Measurement:
        phrase = detectors.find_refusal(reply.text)
        return Measurement(0 if phrase else 1, f"refused: {phrase!r}" if phrase else "")

    return Check("no_refusal", measure, min=1, boolean=True)


def refusal() -> Check:
    """The model refused (for prompts it must refuse)."""

    def measure(reply: Response) -> Measurement:
        phrase = detectors.find_refusal(reply.text)
        return Measurement(1 if phrase else 0, "" if phrase else f"answered instead: {reply.text[:80]!r}")

    return Check("refusal", measure, min=1, boolean=True)


def no_pii(*, kinds: Iterable[str] | None = None, allow: Iterable[str] = ()) -> Check:
    """No emails, phone numbers, card numbers, SSNs, IBANs or keys/tokens. Value: how many found.

    ``kinds`` narrows the search (``email``, ``phone``, ``card``, ``ssn``,
    ``iban``, ``key``); ``allow`` lists strings that may appear, such as your
    own support address. Findings are masked in messages.
    """
    wanted = tuple(kinds) if kinds is not None else detectors.PII_KINDS
    unknown = [k for k in wanted if k not in detectors.PII_KINDS]
    if unknown:
        raise ConfigError(f"no_pii: unknown kinds {unknown}; choose from {', '.join(detectors.PII_KINDS)}")
    allowed = tuple(allow)

    def measure(reply: Response) -> Measurement:
        found = detectors.find_pii(reply.text, wanted, allowed)
        return Measurement(len(found), ", ".join(f"{f.kind}: {f.text}" for f in found))

    return Check("no_pii", measure, max=0, higher_is_better=False)


def no_markdown() -> Check:
    """No markdown (headings, emphasis, lists, code, links, tables): for voice and SMS replies."""

    def measure(reply: Response) -> Measurement:
        found = detectors.find_markdown(reply.text)
        return Measurement(len(found), ", ".join(f"{f.kind} {f.text!r}" for f in found[:5]))

    return Check("no_markdown", measure, max=0, higher_is_better=False)


def language(code: str) -> Check:
    """The reply is in language ``code`` (ISO 639-1, e.g. ``"de"``), by py3langid.

    Short replies (a few words) are hard to classify for any detector; check
    replies of a sentence or more.
    """
    known = detectors.supported_languages()
    if code not in known:
        raise ConfigError(f"language: {code!r} is not a supported ISO 639-1 code; supported: {', '.join(known)}")

    def measure(reply: Response) -> Measurement:
        detected, prob = detectors.detect_language(reply.text)
        return Measurement(1 if detected == code else 0, f"detected {detected!r} (p={prob:.2f})")

    return Check(_label("language", code), measure, min=1, boolean=True)


def not_truncated() -> Check:
    """The reply was not cut off by the token limit (finish reason is not ``length``)."""

    def measure(reply: Response) -> Measurement:
        reason = _needs(reply, "finish_reason", "not_truncated")
        cut = reason == "length"
        return Measurement(0 if cut else 1, "finish_reason='length': raise max_tokens or ask for less" if cut else "")

    return Check("not_truncated", measure, min=1, boolean=True)


def no_prompt_leak(system_prompt: str, *, ngram: int = 8, canaries: Iterable[str] = ()) -> Check:
    """The reply copies no run of ``ngram`` consecutive words of the system prompt, and no canary.

    Value: the longest run of system-prompt words the reply repeats. A prompt
    shorter than ``ngram`` words leaks when the reply repeats all of it.
    ``canaries`` are secret marker strings planted in the prompt: any one in the
    reply is a leak.
    """
    if not isinstance(system_prompt, str) or not system_prompt.strip():
        raise ConfigError("no_prompt_leak: give the system prompt to protect as a non-empty string")
    if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 2:
        raise ConfigError(f"no_prompt_leak: ngram={ngram!r} must be an int >= 2")
    source = detectors.words(system_prompt)
    limit = min(ngram, len(source))
    secret = tuple(canaries)

    def measure(reply: Response) -> Measurement:
        run, text = detectors.longest_shared_run(source, detectors.words(reply.text))
        leaked = [c for c in secret if c in reply.text]
        if leaked:
            return Measurement(max(run, limit), f"canary in reply: {', '.join(map(repr, leaked))}")
        return Measurement(run, f"repeats {run} words of the system prompt: {text!r}" if run >= limit else "")

    return Check("no_prompt_leak", measure, max=limit - 1, higher_is_better=False)


# --- meaning ------------------------------------------------------------------------------


def similarity(reference: str, *, min: float | None = None) -> Check:
    """Cosine similarity of the reply and ``reference`` in the embedding model (semantic).

    ``min`` defaults to ``llm_similarity_threshold``. Samples are encoded in
    one batch; embeddings and similarities are cached on disk.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError("similarity: give the reference answer as a non-empty string")
    engine = get_engine()
    threshold = engine.threshold if min is None else check_threshold(min, "similarity(min=...)")

    def prepare(replies: list[Response]) -> None:
        engine.similarities([(reference, r.text) for r in replies])

    def measure(reply: Response) -> Measurement:
        return Measurement(engine.similarity(reference, reply.text), f"embedding model {engine.identity}")

    return Check(_label("similarity", reference), measure, min=threshold, kind="similarity", prepare=prepare)
