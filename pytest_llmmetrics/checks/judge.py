"""Judged checks: a judge model grades a reply against criteria on a 1..scale rubric, answering in JSON."""

from __future__ import annotations

import builtins
import contextvars
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_llmmetrics.checks.check import Check, Measurement
from pytest_llmmetrics.errors import ConfigError, LLMMetricsError, ModelError, Unmeasured
from pytest_llmmetrics.providers.spec import KNOWN_SPECS, JudgeCall, check_spec
from pytest_llmmetrics.redact import scrub
from pytest_llmmetrics.response import Response
from pytest_llmmetrics.values import number_problem

# The judge's sampling: greedy, seeded, room for a score and one sentence.
JUDGE_PARAMS: dict[str, Any] = {"temperature": 0.0, "max_tokens": 200, "seed": 0}
REASON_CHARS = 300  # the longest reason a grammar-constrained judge (local) may write
MAX_SCALE = 100



class JudgeModels(Protocol):
    """What a judged check needs from the run: the judge model to call, and a place to note what judged."""

    def judge_model(self, spec: str | None) -> tuple[str, JudgeCall, int]:
        """``(spec, call, concurrency)`` for ``spec`` (None: the configured judge model)."""

    def note_judge(self, identity: str) -> None:
        """Called once per judged check with what decides its judgements (for the test's fingerprint)."""


# Set by ``llm_metrics.expect`` (the test's models) and by ``calibrate``, for the duration of one call.
JUDGES: contextvars.ContextVar[JudgeModels | None] = contextvars.ContextVar("pytest_llmmetrics_judges",
                                                                             default=None)


@dataclass(frozen=True)
class Judgement:
    """One graded reply: the score on the rubric, the judge's reason, and its raw answer."""

    score: int
    reason: str
    answer: str


def default_min(scale: int) -> float:
    """The top half of the scale: the lowest score above its middle, normalised (scale 5: 4 of 5 -> 0.75)."""
    lowest = (1 + scale) // 2 + 1
    return normalise(lowest, scale)


def normalise(score: int, scale: int) -> float:
    """A score on 1..scale as 0..1."""
    return (score - 1) / (scale - 1)


def schema(scale: int, *, strict: bool = False) -> dict[str, Any]:
    """The JSON Schema of a judgement; ``strict``: in the form OpenAI's strict structured outputs take."""
    reason: dict[str, Any] = {"type": "string"} if strict else {"type": "string", "maxLength": REASON_CHARS}
    out: dict[str, Any] = {
        "type": "object",
        "properties": {"score": {"type": "integer", "enum": list(range(1, scale + 1))}, "reason": reason},
        "required": ["score", "reason"],
    }
    if strict:
        out["additionalProperties"] = False
    return out


def response_format(spec: str, scale: int) -> dict[str, Any]:
    """Structured output: the judgement's JSON Schema, in the form the judge model takes.

    ``local`` gets llama.cpp's form (``{"type": "json_object", "schema": ...}``, made a grammar:
    the answer is always readable). ``openai:`` and ``py:`` get OpenAI's
    ``{"type": "json_schema", ...}``; a server that refuses it gets the next simpler form (see
    `providers.openai.OpenAIModel`), and a ``py:`` judge that takes ``response_format`` may use it.
    """
    if spec == "local":
        return {"type": "json_object", "schema": schema(scale)}
    return {"type": "json_schema",
            "json_schema": {"name": "judgement", "strict": True, "schema": schema(scale, strict=True)}}


def _instructions(criteria: str, scale: int, examples: Sequence[tuple[str, int, str]]) -> str:
    lines = [
        "You are a strict, fair grader. Grade the assistant's reply below against the criteria, on a scale "
        f"from 1 (does not meet the criteria at all) to {scale} (meets them fully).",
        "",
        f"Criteria: {criteria}",
        "",
        f'Answer with only a JSON object: {{"score": <integer from 1 to {scale}>, "reason": "<one sentence>"}}',
    ]
    for i, (reply, score, reason) in enumerate(examples, 1):
        if i == 1:
            lines += ["", "Graded examples:"]
        answer = json.dumps({"score": score, "reason": reason or f"Graded {score} of {scale}."})
        lines += [f"Example {i} reply: {reply}", f"Example {i} answer: {answer}"]
    return "\n".join(lines)


def _conversation(reply: Response) -> str:
    parts = []
    for message in reply.messages or ():
        parts.append(f"[{message.get('role', '?')}] {message.get('content', '')}")
    shown = "\n".join(parts)
    head = f"The conversation:\n{shown}\n\n" if shown else ""
    return f"{head}The assistant's reply to grade:\n<reply>\n{reply.text}\n</reply>"


def request(criteria: str, scale: int, examples: Sequence[tuple[str, int, str]],
            reply: Response) -> list[dict[str, str]]:
    """The messages the judge gets for one reply."""
    return [{"role": "system", "content": _instructions(criteria, scale, examples)},
            {"role": "user", "content": _conversation(reply)}]


def retry(messages: list[dict[str, str]], answer: str, why: str, scale: int) -> list[dict[str, str]]:
    """The conversation asking once more, after an answer that could not be read."""
    return messages + [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": f"That answer could not be read ({why}). Reply again with only the JSON "
                                    f'object {{"score": <integer from 1 to {scale}>, "reason": "<one sentence>"}} '
                                    "and nothing before or after it."},
    ]


_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```$", re.DOTALL)


def read(answer: str, scale: int) -> tuple[Judgement | None, str]:
    """``(judgement, "")`` or ``(None, why the answer cannot be read)``: strict on meaning, lenient on form.

    The answer must hold exactly one JSON object with a ``score`` (an integer 1..scale, or such a
    number written as a string); text around it and a code fence are tolerated, a second
    judgement, a score out of range, a fraction, a word or a missing score are not: an
    answer that is not clearly one score is never read as one.
    """
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    found = []
    decoder = json.JSONDecoder()
    at = text.find("{")
    while at >= 0:
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict) and "score" in value:
            found.append(value)
        at = text.find("{", end)
    if not found:
        return None, "no JSON object with a score"
    if len(found) > 1:
        return None, f"{len(found)} JSON objects with a score; one judgement is one object"
    data = found[0]
    score = data["score"]
    if isinstance(score, str) and score.strip().isdigit():
        score = int(score.strip())
    elif isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= scale:
        return None, f"score {data['score']!r} is not an integer from 1 to {scale}"
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        reason = json.dumps(reason)
    return Judgement(score, " ".join(reason.split()), answer), ""


def grade(call: JudgeCall, criteria: str, scale: int, examples: Sequence[tuple[str, int, str]],
          reply: Response, params: Mapping[str, Any]) -> Judgement:
    """One reply graded: asked once, once more with a stricter instruction if unreadable, else `Unmeasured`."""
    messages = request(criteria, scale, examples, reply)
    answer = call(messages, dict(params)).text
    judgement, why = read(answer, scale)
    if judgement is not None:
        return judgement
    again = call(retry(messages, answer, why, scale), dict(params)).text
    judgement, why_again = read(again, scale)
    if judgement is not None:
        return judgement
    raise Unmeasured(f"judge reply could not be read ({why_again}), also when asked again: {_quote(again)}")


def _quote(text: str, limit: int = 200) -> str:
    flat = " ".join(scrub(text).split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "\u2026")


def _examples(examples: Iterable[Any] | None, scale: int) -> tuple[tuple[str, int, str], ...]:
    if examples is None:
        return ()
    if isinstance(examples, (str, bytes, Mapping)) or not isinstance(examples, Iterable):
        raise ConfigError(f"judge: examples= is a list of graded examples like [('Thanks!', 5)], got "
                          f"{examples!r:.80}")
    out = []
    for i, example in enumerate(examples):
        if isinstance(example, Mapping):
            unknown = sorted(set(example) - {"reply", "score", "reason"})
            if unknown:
                raise ConfigError(f"judge: example {i} has unknown key(s) {', '.join(map(repr, unknown))}; "
                                  "the keys are 'reply', 'score' and 'reason'")
            reply, score, reason = example.get("reply"), example.get("score"), example.get("reason", "")
        elif isinstance(example, (tuple, list)) and len(example) in (2, 3):
            reply, score, reason = (*example, "")[:3]
        else:
            raise ConfigError(f"judge: example {i} must be (reply, score), (reply, score, reason) or a dict with "
                              f"'reply', 'score' and optionally 'reason'; got {example!r:.80}")
        if not isinstance(reply, str) or not reply.strip():
            raise ConfigError(f"judge: example {i}: the reply must be a non-empty string, got {reply!r:.80}")
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= scale:
            raise ConfigError(f"judge: example {i}: the score must be an integer from 1 to {scale}, got {score!r}")
        if not isinstance(reason, str):
            raise ConfigError(f"judge: example {i}: the reason must be a string, got {reason!r:.80}")
        out.append((reply, score, reason))
    return tuple(out)


def _label(criteria: str) -> str:
    text = " ".join(scrub(criteria).split())
    return f"judge[{text if len(text) <= 30 else text[:29] + chr(0x2026)}]"


def judge(criteria: str, *, model: str | None = None, min: float | None = None, scale: int = 5,
          examples: Iterable[Any] | None = (), name: str | None = None) -> Check:
    """A judge model grades the reply (and the conversation that produced it) against ``criteria``.

    The judge answers ``{"score": 1..scale, "reason": "..."}``; the metric's value
    is the score normalised to 0..1 (``(score - 1) / (scale - 1)``), passing at
    ``min`` (default: the top half of the scale, 4 of 5 = 0.75). ``model`` is a
    model spec (default ``--llm-judge-model`` / ``llm_judge_model``, else
    ``local``); ``examples`` are graded examples shown to the judge, each
    ``(reply, score)``, ``(reply, score, reason)`` or a dict of those keys.
    An answer that cannot be read is asked again once; a second one fails the
    check ("judge reply could not be read"), never passes it. Judge calls are
    recorded and replayed like the model's (``--llm-record-mode``).
    """
    __tracebackhide__ = True
    if not isinstance(criteria, str) or not criteria.strip():
        raise ConfigError("judge: give the criteria as a non-empty string, e.g. "
                          "metrics.judge('The reply is polite and answers the question')")
    if isinstance(scale, bool) or not isinstance(scale, int) or not 2 <= scale <= MAX_SCALE:
        raise ConfigError(f"judge: scale={scale!r} must be an int from 2 to {MAX_SCALE} (a rubric of 1..scale)")
    if model is not None:
        if not isinstance(model, str):
            raise ConfigError(f"judge: model= is a model spec string ({KNOWN_SPECS}), got {model!r:.80}")
        try:
            check_spec(model)
        except ConfigError as exc:
            raise ConfigError(f"judge: model={model!r}: {exc}") from None
    if min is not None:
        problem = number_problem(min, 0, 1)
        if problem:
            raise ConfigError(f"judge: min {problem} (scores are normalised to 0..1)")
    shown = _examples(examples, scale)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"judge: name={name!r} must be a non-empty string")
    # Judgements of the replies `prepare` was given, by id (with the reply, as ids are reused once it is gone).
    judged: dict[int, tuple[Response, Judgement | LLMMetricsError]] = {}

    def judge_all(replies: list[Response]) -> None:
        models = JUDGES.get()
        if models is None:
            raise ConfigError(
                "metrics.judge() grades replies within a test: pass it to llm_metrics.expect(reply, ...); "
                "to try it on labelled replies, use python -m pytest_llmmetrics calibrate"
            )
        spec, call, concurrency = models.judge_model(model)
        params = {**JUDGE_PARAMS, "response_format": response_format(spec, scale)}
        models.note_judge(identity(spec, criteria, scale, shown))

        def one(reply: Response) -> Judgement | LLMMetricsError:
            try:
                return grade(call, criteria, scale, shown, reply, params)
            except (Unmeasured, ModelError) as exc:  # this reply's judgement failed: raised when it is measured
                return exc

        workers = builtins.min(len(replies), concurrency)
        if workers <= 1:
            results = [one(r) for r in replies]
        else:  # a server judge grades the samples at once, bounded by llm_concurrency
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-judge") as pool:
                results = list(pool.map(one, replies))
        judged.update((id(r), (r, j)) for r, j in zip(replies, results))

    def measure(reply: Response) -> Measurement:
        entry = judged.pop(id(reply), None)
        if entry is None or entry[0] is not reply:
            judge_all([reply])
            entry = judged.pop(id(reply))
        result = entry[1]
        if isinstance(result, LLMMetricsError):
            raise result
        return Measurement(normalise(result.score, scale), f"judge: {result.score} of {scale}: {result.reason}")

    threshold = default_min(scale) if min is None else float(min)
    label = name if name is not None else _label(criteria)
    return Check(label, measure, min=threshold, higher_is_better=True, kind="judge", prepare=judge_all)


def identity(spec: str, criteria: str, scale: int, examples: Sequence[tuple[str, int, str]]) -> str:
    """What decides a judged check's judgements, hashed: the judge model, criteria, scale and examples."""
    blob = json.dumps([spec, criteria, scale, list(examples)], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
