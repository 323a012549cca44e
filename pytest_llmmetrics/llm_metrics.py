"""The ``llm_metrics`` fixture: record metric values and check replies with soft failure."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmmetrics.checks.check import Check, Outcome, to_value
from pytest_llmmetrics.checks.judge import JUDGES
from pytest_llmmetrics.checks.registry import MetricRegistry
from pytest_llmmetrics.errors import ConfigError, Unmeasured
from pytest_llmmetrics.matrix import Usage
from pytest_llmmetrics.providers.spec import JudgeCall
from pytest_llmmetrics.redact import safe_params, scrub
from pytest_llmmetrics.response import Response, as_response
from pytest_llmmetrics.tracks import default_track, track_problem
from pytest_llmmetrics.values import number_problem


@dataclass
class MetricRecord:
    """All values one test recorded for one metric (several values = samples)."""

    name: str
    kind: str
    higher_is_better: bool | None  # None: no direction, a move is only "changed"
    values: list[float] = field(default_factory=list)
    passed: int | None = None  # samples that met the check's threshold; None for plain records
    threshold: str | None = None
    binary: bool = True  # every value is a yes/no (1/0): compared as a rate, not as a mean
    track: str = "utility"

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (0.0 for a single value)."""
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))


@dataclass(frozen=True)
class Miss:
    """A check that did not pass, with everything the failure message shows."""

    metric: str
    value: str
    threshold: str
    detail: str = ""
    reply: str = ""

    def format(self) -> str:
        line = f"- {self.metric} = {self.value}, needs {self.threshold}"
        if self.detail:
            detail = self.detail.replace("\n", "\n    ")
            line += f"\n    {detail}"
        if self.reply:
            line += f"\n    reply: {self.reply}"
        return line


def _stored(value: float) -> float:
    """A value as stored: six significant digits, so floating-point noise never reaches the baseline."""
    return float(f"{value:.6g}")


def _excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(scrub(text).split())  # redacted before it is cut: no half secret survives the cut
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "\u2026")


def _worst(outcomes: list[Outcome], higher_is_better: bool) -> int:
    """The sample a miss shows: the worst one that missed (the lowest-scored for higher-is-better), first on ties."""
    missed = [i for i, o in enumerate(outcomes) if not o.passed]
    return min(missed, key=lambda i: outcomes[i].value if higher_is_better else -outcomes[i].value)


def _direction(higher_is_better: bool | None) -> str:
    return {True: "higher is better", False: "lower is better", None: "having no direction"}[higher_is_better]


class MetricsRecorder:
    """Collects one test's metrics; misses fail the test once, after it ran.

    ``expect`` never stops the test: every check of every call is measured and
    recorded (so the baseline always gets complete data), and the test fails
    at the end with one message listing all misses.
    """

    def __init__(self, registry_factory: Callable[[], MetricRegistry],
                 judge_models: Callable[[str | None], tuple[str, JudgeCall, int]] | None = None) -> None:
        self._registry_factory = registry_factory
        self._judge_models = judge_models
        self.records: dict[str, MetricRecord] = {}
        self.misses: list[Miss] = []
        # What the metrics depend on, so the delta report can say why one moved.
        self.fingerprint: dict[str, str] = {}
        self._prompts = hashlib.sha256()
        self._judges: set[str] = set()
        self.usage = Usage()  # the replies of the model under test (the model matrix adds them up per model)

    def judge_model(self, spec: str | None) -> tuple[str, JudgeCall, int]:
        """The judge model of a judged check (`checks.judge.JudgeModels`): this test's, recorded like ``llm``."""
        if self._judge_models is None:
            raise ConfigError("metrics.judge() needs the pytest-llmmetrics plugin's llm_metrics fixture")
        return self._judge_models(spec)

    def note_judge(self, identity: str) -> None:
        """A judged check's judge model and criteria are part of the test's fingerprint ("judge changed")."""
        self._judges.add(identity)
        self.fingerprint["judge"] = hashlib.sha256(" ".join(sorted(self._judges)).encode()).hexdigest()[:16]

    def note_call(self, model: str, params: dict[str, Any], messages: list[dict[str, str]]) -> None:
        """Called by the ``llm`` fixture for every request this test sends."""
        self._prompts.update(json.dumps(messages, sort_keys=True).encode())
        self.fingerprint["model"] = model
        self.fingerprint["params"] = json.dumps(safe_params(params), sort_keys=True)  # no api_key in a baseline
        self.fingerprint["prompt"] = self._prompts.hexdigest()[:16]

    def note_reply(self, reply: Response) -> None:
        """Called by the ``llm`` fixture for every reply of the model under test: its latency, tokens and cost."""
        self.usage.add(reply)

    def summary(self, group: str) -> dict[str, Any]:
        """This test's metrics as stored in the baseline (plain JSON types: they travel from xdist workers).

        ``group`` is the test's group (``@pytest.mark.llm(group=...)``, default its module), kept with each metric.
        """
        metrics = {
            name: {
                "group": group,
                "higher_is_better": r.higher_is_better,
                "kind": r.kind,
                "mean": _stored(r.mean),
                "n": r.n,
                "passed": r.passed,
                "scale": "binary" if r.binary else "numeric",
                "std": _stored(r.std),
                "threshold": r.threshold,
                "track": r.track,
            }
            for name, r in sorted(self.records.items())
        }
        return {"fingerprint": dict(sorted(self.fingerprint.items())), "metrics": metrics}

    @property
    def registry(self) -> MetricRegistry:
        return self._registry_factory()

    def check(self, metric: str, /, *args: Any, **kwargs: Any) -> Check:
        """A named metric (built-in, ``@metric`` or from a plugin) built with arguments (``name=`` renames it)."""
        return self.registry.check(metric, *args, **kwargs)

    def record(self, name: str, value: float | bool, *, higher_is_better: bool | None = None,
               track: str | None = None) -> None:
        """Record a metric value; recording the same name again adds a sample.

        ``higher_is_better`` gives the direction the delta report judges moves
        by; without it a move beyond the tolerance is only *changed*, never a
        regression. Bools are yes/no values, compared as a rate over samples.
        ``track``: ``utility``, ``alignment`` or ``operations`` (default: by the
        name, as for the built-in checks; otherwise utility).
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"llm_metrics.record(): the metric name must be a non-empty string, got {name!r}")
        if higher_is_better is not None and not isinstance(higher_is_better, bool):
            raise ConfigError(f"llm_metrics.record({name!r}): higher_is_better must be True, False or None, "
                              f"got {higher_is_better!r}")
        if track is not None and track_problem(track):
            raise ConfigError(f"llm_metrics.record({name!r}): track {track_problem(track)}")
        kind = name.split("[", 1)[0]
        self._add(name, kind, higher_is_better, [to_value(value, f"llm_metrics.record({name!r})")],
                  binary=isinstance(value, bool), track=track or default_track(kind))

    def expect(self, replies: Response | str | Sequence[Response | str], *checks: Check | str,
               pass_rate: float | None = None) -> None:
        """Measure every check on the reply (or each sample), record it, remember misses.

        With a list of replies each check's value is the mean over samples; it
        passes when the mean meets the threshold, or, with ``pass_rate=0.8``,
        when at least 80 % of samples pass on their own.
        """
        samples = self._samples(replies)
        resolved = self._checks(checks)
        if pass_rate is not None and number_problem(pass_rate, 0, 1, lo_open=True):
            raise ConfigError(f"llm_metrics.expect(): pass_rate must be a number in (0, 1], got {pass_rate!r}")
        token = JUDGES.set(self)  # judged checks call the judge model through this test
        try:
            for check in resolved:
                if check.prepare is not None:
                    check.prepare(samples)
                outcomes: list[Outcome] = []
                unmeasured: tuple[int, Unmeasured] | None = None
                for i, reply in enumerate(samples):
                    try:
                        outcomes.append(check.evaluate(reply))
                    except Unmeasured as exc:
                        unmeasured = unmeasured or (i, exc)
                if unmeasured is None:
                    self._judge(check, samples, outcomes, pass_rate)
                else:
                    self._unmeasured(check, samples, outcomes, unmeasured)
        finally:
            JUDGES.reset(token)

    def _unmeasured(self, check: Check, samples: list[Response], outcomes: list[Outcome],
                    unmeasured: tuple[int, Unmeasured]) -> None:
        """A check that could not measure every reply misses, never passes; what it did measure is recorded."""
        if outcomes:
            binary = all(o.boolean for o in outcomes)
            self._add(check.name, check.kind, check.higher_is_better, [o.value for o in outcomes],
                      passed=sum(o.passed for o in outcomes), threshold=outcomes[0].threshold, binary=binary,
                      track=check.track)
        i, exc = unmeasured
        n = len(samples)
        failed = n - len(outcomes)
        value = "not measured" if n == 1 else f"{failed} of {n} samples not measured"
        detail = str(exc) if n == 1 else f"sample {i}: {exc}"
        self.misses.append(Miss(check.name, value, check.threshold, detail, _excerpt(samples[i].text)))

    def _judge(self, check: Check, samples: list[Response], outcomes: list[Outcome], pass_rate: float | None) -> None:
        values = [o.value for o in outcomes]
        k = sum(o.passed for o in outcomes)
        n = len(outcomes)
        binary = all(o.boolean for o in outcomes)
        # A yes/no check with no bounds means "must be true": true is the good direction.
        direction = True if check.higher_is_better is None and binary else check.higher_is_better
        self._add(check.name, check.kind, direction, values, passed=k, threshold=outcomes[0].threshold, binary=binary,
                  track=check.track)
        if pass_rate is not None and not binary:
            # The gate's own pass rate is tracked too: the values say how far, the rate how often.
            self._add(f"pass_rate[{check.name}]", "pass_rate", True, [float(o.passed) for o in outcomes],
                      passed=k, threshold=f">= {pass_rate:.0%}", binary=True, track=check.track)
        first_miss = next((i for i, o in enumerate(outcomes) if not o.passed), None)
        if n == 1 and pass_rate is None:
            if first_miss is None:
                return
            o = outcomes[0]
            self.misses.append(Miss(check.name, o.format_value(), o.threshold, o.detail, _excerpt(samples[0].text)))
            return
        if pass_rate is not None:
            if k / n >= pass_rate:
                return
            value, threshold = f"{k} of {n} samples passed", f"pass rate >= {pass_rate:.0%} ({outcomes[0].threshold})"
        else:
            mean = math.fsum(values) / n
            unbounded = check.min is None and check.max is None
            if (k == n) if unbounded else check.passes(mean):
                return
            value = f"mean {mean:.4g} over {n} samples ({k} passed)"
            if outcomes[0].boolean:
                threshold = "every sample " + outcomes[0].threshold.removeprefix("must be ")
            else:
                threshold = f"mean {outcomes[0].threshold}"
        assert first_miss is not None
        shown = _worst(outcomes, direction) if direction is not None else first_miss
        o = outcomes[shown]
        detail = f"sample {shown}: {o.format_value()}" + (f", {o.detail}" if o.detail else "")
        self.misses.append(Miss(check.name, value, threshold, detail, _excerpt(samples[shown].text)))

    def _add(self, name: str, kind: str, higher_is_better: bool | None, values: list[float], *,
             passed: int | None = None, threshold: str | None = None, binary: bool = False,
             track: str = "utility") -> None:
        record = self.records.get(name)
        if record is None:
            self.records[name] = MetricRecord(name, kind, higher_is_better, list(values), passed, threshold, binary,
                                              track)
            return
        if record.higher_is_better != higher_is_better:
            raise ConfigError(
                f"metric {name!r} was recorded as {_direction(record.higher_is_better)}, "
                f"now as {_direction(higher_is_better)}; give different checks different names with .named(...)"
            )
        record.values.extend(values)
        record.binary = record.binary and binary
        if passed is not None:
            record.passed = (record.passed or 0) + passed

    @staticmethod
    def _samples(replies: Any) -> list[Response]:
        if isinstance(replies, (list, tuple)):
            if not replies:
                raise ConfigError("llm_metrics.expect(): the list of replies is empty")
            return [as_response(r, f"llm_metrics.expect(): reply {i} of the list") for i, r in enumerate(replies)]
        return [as_response(replies, "llm_metrics.expect(): the reply", or_list=True)]

    def _checks(self, checks: Sequence[object]) -> list[Check]:
        if not checks:
            raise ConfigError(
                "llm_metrics.expect() needs at least one check, e.g. expect(reply, metrics.word_count(max=50))"
            )
        resolved = []
        for check in checks:
            if isinstance(check, str):
                check = self.registry.check(check)
            elif not isinstance(check, Check):
                hint = " (call it: add the parentheses)" if callable(check) else ""
                raise ConfigError(
                    f"llm_metrics.expect(): {check!r} is not a check{hint}; pass checks such as "
                    "metrics.word_count(max=50) or a metric name such as 'no_pii'"
                )
            resolved.append(check)
        return resolved

    def failure_message(self) -> str:
        """Every miss, with secrets in replies or findings redacted: CI logs are read by many."""
        noun = "check" if len(self.misses) == 1 else "checks"
        return str(scrub(f"{len(self.misses)} llm {noun} missed:\n" + "\n".join(m.format() for m in self.misses)))
