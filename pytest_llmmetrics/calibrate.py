"""Threshold calibration: a metric measured on human-labelled replies, and the threshold that best fits the labels."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import iniconfig
import pytest

from pytest_llmmetrics import metrics, options
from pytest_llmmetrics.checks.check import Check
from pytest_llmmetrics.checks.judge import JUDGES
from pytest_llmmetrics.checks.registry import MetricFactory, builtin_registry
from pytest_llmmetrics.display import show_path
from pytest_llmmetrics.errors import ConfigError, LLMMetricsError, MetricError, ModelError
from pytest_llmmetrics.files import json_value
from pytest_llmmetrics.providers.cache import ModelCache
from pytest_llmmetrics.providers.spec import JudgeCall
from pytest_llmmetrics.redact import scrub
from pytest_llmmetrics.replay import Recordings, Sender, recording_path
from pytest_llmmetrics.response import Response
from pytest_llmmetrics.semantic import engine as semantic_engine

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover -- pytest itself depends on tomli there
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

RESAMPLES = 2000  # bootstrap resamples of the kappa interval
WEAK_KAPPA = 0.4  # below this, agreement with the labels is too weak for a CI gate
FIELDS = {"reply", "label", "prompt", "messages", "reference", "criteria", "args", "kwargs", "id"}


class CalibrationError(LLMMetricsError):
    """Bad input to ``calibrate``: the message names the file (and line) and what to write."""


@dataclass(frozen=True)
class Row:
    """One labelled reply: what the metric needs, and the human label (True: acceptable)."""

    line: int
    reply: Response
    label: bool
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cut:
    """A threshold and how it agrees with the labels."""

    threshold: float
    accuracy: float
    false_pass: float  # of the unacceptable replies, the share that passes
    false_fail: float  # of the acceptable replies, the share that fails
    kappa: float
    correct: int
    false_passes: int
    false_fails: int


# --- the statistics -----------------------------------------------------------------------------------------

def kappa(predicted: Sequence[bool], labels: Sequence[bool]) -> float:
    """Cohen's kappa of two yes/no ratings of the same items (1: full agreement, 0: chance)."""
    n = len(labels)
    agree = sum(p == y for p, y in zip(predicted, labels)) / n
    p_yes, y_yes = sum(predicted) / n, sum(labels) / n
    chance = p_yes * y_yes + (1 - p_yes) * (1 - y_yes)
    if chance >= 1:
        return 1.0 if agree == 1 else 0.0
    return (agree - chance) / (1 - chance)


def passes(value: float, threshold: float, higher_is_better: bool) -> bool:
    return value >= threshold if higher_is_better else value <= threshold


def cut(values: Sequence[float], labels: Sequence[bool], threshold: float, higher_is_better: bool) -> Cut:
    """How ``threshold`` agrees with the labels."""
    predicted = [passes(v, threshold, higher_is_better) for v in values]
    good = sum(labels)
    bad = len(labels) - good
    false_passes = sum(p and not y for p, y in zip(predicted, labels))
    false_fails = sum(y and not p for p, y in zip(predicted, labels))
    correct = len(labels) - false_passes - false_fails
    return Cut(threshold, correct / len(labels), false_passes / bad if bad else 0.0,
               false_fails / good if good else 0.0, kappa(predicted, labels), correct, false_passes, false_fails)


def round_between(low: float, high: float, *, include_high: bool) -> float:
    """The roundest number in ``(low, high]`` (``[low, high)`` without ``include_high``), nearest the middle:
    a threshold that reads well and sorts the measured values the same (30 between 25 and 40, 0.6 in (0.41, 0.77])."""
    middle = (low + high) / 2
    # From the power of ten of the gap down: each power tries at most ~10 multiples.
    top = math.floor(math.log10(high - low)) + 1 if high > low else 0
    for power in range(top, top - 15, -1):
        step = 10.0 ** power
        first = math.floor(low / step)
        steps = [k * step if power >= 0 else round(k * step, -power) for k in range(first, math.floor(high / step) + 1)]
        inside = [t for t in steps if (low < t <= high if include_high else low <= t < high)]
        if inside:
            return min(inside, key=lambda t: (abs(t - middle), t))
    return middle


def candidates(values: Sequence[float], higher_is_better: bool) -> list[float]:
    """Every threshold that sorts the values differently: one between each pair of neighbours, and the one
    every value meets."""
    distinct = sorted(set(values))
    if higher_is_better:  # passes at value >= t: t in (v_i, v_i+1]
        between = [round_between(a, b, include_high=True) for a, b in zip(distinct, distinct[1:])]
        low = distinct[0]
        return [round_between(low - max(abs(low) * 0.05, 1e-6), low, include_high=True)] + between
    between = [round_between(a, b, include_high=False) for a, b in zip(distinct, distinct[1:])]
    high = distinct[-1]
    return between + [round_between(high, high + max(abs(high) * 0.05, 1e-6), include_high=False)]


def best(values: Sequence[float], labels: Sequence[bool], higher_is_better: bool,
         max_false_pass: float | None = None) -> Cut | None:
    """The threshold that agrees best with the labels (accuracy, then kappa, then fewer false passes);
    with ``max_false_pass``, the best of those whose false-pass rate is at most that. None: no such threshold."""
    # A threshold that no value meets (every reply fails) is no gate: never offered.
    cuts = [cut(values, labels, t, higher_is_better) for t in candidates(values, higher_is_better)
            if math.isfinite(t)]
    if max_false_pass is not None:
        cuts = [c for c in cuts if c.false_pass <= max_false_pass + 1e-12]
    if not cuts:
        return None
    return max(cuts, key=lambda c: (c.accuracy, c.kappa, -c.false_pass))


def kappa_interval(values: Sequence[float], labels: Sequence[bool], threshold: float, higher_is_better: bool,
                   resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval of kappa at ``threshold`` (rows resampled, the threshold kept)."""
    rng = random.Random(seed)
    predicted = [passes(v, threshold, higher_is_better) for v in values]
    n = len(values)
    draws = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        draws.append(kappa([predicted[i] for i in picks], [labels[i] for i in picks]))
    draws.sort()
    return draws[int(0.025 * resamples)], draws[min(resamples - 1, int(0.975 * resamples))]


# --- the labelled file ----------------------------------------------------------------------------------------

def load_rows(path: Path, metric: str) -> list[Row]:
    """The rows of a JSON Lines file of labelled replies; a bad line is a `CalibrationError` naming file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such file; give a JSON Lines file of labelled replies") from None
    except IsADirectoryError:
        raise CalibrationError(f"{path}: is a folder; give a JSON Lines file of labelled replies") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot be read ({exc}); save it as UTF-8 JSON Lines") from None
    rows = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            data, end = json_value(raw, path, at=len(raw) - len(raw.lstrip()), first_line=number,
                                   hint='write one JSON object per line, e.g. {"reply": "...", "label": true}')
        except ConfigError as exc:
            raise CalibrationError(str(exc)) from None
        if raw[end:].strip():
            raise CalibrationError(f"{where}: more after the JSON object; write one JSON object per line")
        rows.append(_row(data, number, where, metric))
    if not rows:
        raise CalibrationError(f"{path}: no labelled replies in it")
    good = sum(r.label for r in rows)
    if good in (0, len(rows)):
        which = "acceptable" if good else "unacceptable"
        raise CalibrationError(f"{path}: every one of its {len(rows)} replies is labelled {which}; a threshold is "
                               "chosen between the two kinds, so label some of each")
    return rows


def _row(data: Any, number: int, where: str, metric: str) -> Row:
    if not isinstance(data, dict):
        raise CalibrationError(f'{where}: each line must be a JSON object like {{"reply": "...", "label": true}}')
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise CalibrationError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                               f"{', '.join(sorted(FIELDS))}")
    reply = data.get("reply")
    if not isinstance(reply, str):
        raise CalibrationError(f"{where}: 'reply' must be the reply's text (a string), got {reply!r:.60}")
    label = data.get("label")
    if label not in (True, False) or isinstance(label, (int, float)) and not isinstance(label, bool):
        raise CalibrationError(f"{where}: 'label' must be true (acceptable) or false (not), got {label!r:.60}")
    messages = _messages(data, where)
    args: list[Any] = []
    if metric == "similarity":
        args = [_text(data, "reference", where, "the reference answer")]
    elif metric == "judge":
        args = [_text(data, "criteria", where, "the judge's criteria")]
    extra = data.get("args", [])
    kwargs = data.get("kwargs", {})
    if not isinstance(extra, list):
        raise CalibrationError(f"{where}: 'args' must be a list of the metric's arguments, got {extra!r:.60}")
    if not isinstance(kwargs, dict):
        raise CalibrationError(f"{where}: 'kwargs' must be an object of the metric's keyword arguments, "
                               f"got {kwargs!r:.60}")
    response = Response(text=reply, messages=messages)
    return Row(number, response, bool(label), tuple(args + extra), dict(kwargs))


def _text(data: dict[str, Any], name: str, where: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CalibrationError(f"{where}: {name!r} must be {what} (a non-empty string), got {value!r:.60}")
    return value


def _messages(data: dict[str, Any], where: str) -> tuple[dict[str, str], ...] | None:
    if "prompt" in data and "messages" in data:
        raise CalibrationError(f"{where}: give 'prompt' or 'messages', not both")
    if "prompt" in data:
        prompt = data["prompt"]
        if not isinstance(prompt, str):
            raise CalibrationError(f"{where}: 'prompt' must be a string, got {prompt!r:.60}")
        return ({"role": "user", "content": prompt},)
    if "messages" in data:
        messages = data["messages"]
        ok = isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)
        if not ok:
            raise CalibrationError(f"{where}: 'messages' must be a list of {{\"role\": ..., \"content\": ...}} "
                                   "objects")
        return tuple(dict(m) for m in messages)
    return None


# --- settings: the project's ini file, then the command line -----------------------------------------------

INI_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def find_ini(start: Path) -> tuple[Path | None, dict[str, str]]:
    """The pytest configuration file at or above ``start`` (as pytest looks for it) and its settings."""
    for folder in (start, *start.parents):
        for name in INI_FILES:
            path = folder / name
            if not path.is_file():
                continue
            settings = _read_ini(path)
            if settings is not None:
                return path, settings
    return None, {}


def _read_ini(path: Path) -> dict[str, str] | None:
    try:
        if path.name == "pyproject.toml":
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {})
            section = table.get("ini_options", table if table else None)
            return None if section is None else {k: " ".join(map(str, v)) if isinstance(v, list) else str(v)
                                                 for k, v in section.items()}
        ini = iniconfig.IniConfig(str(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, iniconfig.ParseError) as exc:
        raise CalibrationError(f"{path}: cannot be read: {exc}") from None
    name = {"tox.ini": "pytest", "setup.cfg": "tool:pytest"}.get(path.name, "pytest")
    if name not in ini:
        return None if path.name in ("tox.ini", "setup.cfg") else {}
    return {key: value for key, value in ini[name].items()}


class FileConfig:
    """Enough of `pytest.Config` for `options`: the command line's values, else the ini file's."""

    def __init__(self, cli: dict[str, Any], ini: dict[str, str], inipath: Path | None, rootpath: Path) -> None:
        self._cli = cli
        self._ini = ini
        self.inipath = inipath
        self.rootpath = rootpath

    def getoption(self, name: str, default: Any = None) -> Any:
        return self._cli.get(name, default)

    def getini(self, name: str) -> Any:
        return self._ini.get(name)


# --- measuring -------------------------------------------------------------------------------------------

class Judges:
    """The judge models of a calibration: the configured one, recorded next to the labels like a test's."""

    def __init__(self, models: ModelCache, default: str, wrap: Callable[[Any], Any] | None) -> None:
        self._models = models
        self._default = default
        self._wrap = wrap

    def judge_model(self, spec: str | None) -> tuple[str, JudgeCall, int]:
        return self._models.judge_model(spec or self._default, self._wrap)

    def note_judge(self, identity: str) -> None:
        pass


def make_check(metric: str, row: Row) -> Check:
    """The metric's check for one row (its bounds do not matter: the values are what is calibrated)."""
    if metric == "similarity":
        return metrics.similarity(*row.args, **row.kwargs)
    if metric == "judge":
        return metrics.judge(*row.args, **row.kwargs)
    # The built-ins and the @metric functions of the conftest.py files imported by `run`.
    return builtin_registry().check(metric, *row.args, **row.kwargs)


def measure(rows: list[Row], metric: str, file: Path,
            direction: bool | None = None) -> tuple[list[tuple[Row, float]], list[str], bool | None]:
    """Every row's value; rows that could not be measured (``"line N: why"``); the metric's direction.

    ``direction`` (from ``--direction``) overrides the metric's. A row whose judge call fails
    (unreadable, timed out, raised) is left out and listed; a bad metric or argument is an error.
    """
    groups: dict[str, list[Row]] = {}
    for row in rows:  # rows with the same arguments share one check: judged at once, encoded in one batch
        key = json.dumps([row.args, row.kwargs], sort_keys=True, default=repr)
        groups.setdefault(key, []).append(row)
    values: dict[int, float] = {}
    failed: dict[int, str] = {}
    directions: dict[bool, int] = {}
    for group in groups.values():
        try:
            check = make_check(metric, group[0])
        except ConfigError as exc:
            raise CalibrationError(f"{file}:{group[0].line}: {exc}") from None
        if check.higher_is_better is not None:
            directions.setdefault(check.higher_is_better, group[0].line)
        if check.prepare is not None:  # a judge keeps each reply's failure for its own row
            check.prepare([r.reply for r in group])
        for row in group:
            try:
                values[row.line] = check.evaluate(row.reply).value
            except (MetricError, ModelError) as exc:
                failed[row.line] = f"line {row.line}: {scrub(str(exc))}"
    if direction is None and len(directions) > 1:
        raise CalibrationError(f"{file}: the rows disagree on the metric's direction (line {directions[True]}: "
                               f"higher is better, line {directions[False]}: lower is better); give all rows "
                               "the same bounds, or say which with --direction higher|lower")
    if direction is None and directions:
        direction = next(iter(directions))
    measured = [(r, values[r.line]) for r in rows if r.line in values]
    return measured, [failed[line] for line in sorted(failed)], direction


# --- the command ---------------------------------------------------------------------------------------------

@dataclass
class Report:
    """What ``calibrate`` found, as printed and as JSON."""

    metric: str
    file: str
    rows: int
    acceptable: int
    unacceptable: int
    higher_is_better: bool
    best: Cut
    kappa_low: float
    kappa_high: float
    paste: str
    strict: Cut | None = None
    strict_paste: str | None = None
    max_false_pass: float | None = None
    not_measured: list[str] = field(default_factory=list)

    @property
    def warning(self) -> str | None:
        if self.best.kappa >= WEAK_KAPPA:
            return None
        return (f"kappa {self.best.kappa:.2f} is below {WEAK_KAPPA}: this metric agrees with your labels little "
                "better than chance; do not trust it as a gate (add labelled rows, or pick another metric)")

    def as_dict(self) -> dict[str, Any]:
        def numbers(c: Cut) -> dict[str, Any]:
            return {"threshold": c.threshold, "accuracy": round(c.accuracy, 4), "false_pass": round(c.false_pass, 4),
                    "false_fail": round(c.false_fail, 4), "kappa": round(c.kappa, 4)}

        out: dict[str, Any] = {"metric": self.metric, "file": self.file, "rows": self.rows,
                               "acceptable": self.acceptable, "unacceptable": self.unacceptable,
                               "direction": "higher" if self.higher_is_better else "lower", **numbers(self.best),
                               "kappa_low": round(self.kappa_low, 4), "kappa_high": round(self.kappa_high, 4),
                               "resamples": RESAMPLES, "paste": self.paste, "warning": self.warning,
                               "not_measured": self.not_measured}
        if self.max_false_pass is not None:
            out["max_false_pass"] = {"rate": self.max_false_pass,
                                     **(numbers(self.strict) if self.strict else {"threshold": None}),
                                     "paste": self.strict_paste}
        return out

    def text(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        lines = [f"calibrated {self.metric} on {self.file}: {self.rows} rows ({self.acceptable} acceptable, "
                 f"{self.unacceptable} not)", "best separation of the labels:"]
        lines += _cut_lines(self.best, sign, self.acceptable, self.unacceptable)
        lines.append(f"  kappa        {self.best.kappa:.2f} (95 % interval {self.kappa_low:.2f} to "
                     f"{self.kappa_high:.2f}, {RESAMPLES:,} bootstrap resamples)")
        lines.append(f"  paste        {self.paste}")
        if self.max_false_pass is not None:
            if self.strict is None:
                lines.append(f"no threshold keeps false passes at or below {self.max_false_pass:.1%}")
            else:
                lines.append(f"at most {self.max_false_pass:.1%} false passes:")
                lines += _cut_lines(self.strict, sign, self.acceptable, self.unacceptable)
                lines.append(f"  kappa        {self.strict.kappa:.2f}"
                             + (f" (below {WEAK_KAPPA}: a weak gate)" if self.strict.kappa < WEAK_KAPPA else ""))
                lines.append(f"  paste        {self.strict_paste}")
        for problem in self.not_measured:
            lines.append(f"not measured (left out): {problem}")
        if self.warning:
            lines.append(f"WARNING: {self.warning}")
        return "\n".join(lines)


def _cut_lines(c: Cut, sign: str, good: int, bad: int) -> list[str]:
    return [
        f"  threshold    {sign} {_num(c.threshold)}",
        f"  accuracy     {c.accuracy:.1%} ({c.correct} of {good + bad})",
        f"  false pass   {c.false_pass:.1%} ({c.false_passes} of {bad} unacceptable replies pass)",
        f"  false fail   {c.false_fail:.1%} ({c.false_fails} of {good} acceptable replies fail)",
    ]


def _num(value: float) -> str:
    return f"{value:.6g}"


def paste_line(metric: str, threshold: float, higher_is_better: bool, args: Sequence[Any] = ()) -> str:
    """The ini line or check argument that sets the threshold; for a check whose bound is fixed, what to do."""
    bound = "min" if higher_is_better else "max"
    value = _num(threshold)
    if metric == "similarity":
        return f"llm_similarity_threshold = {value}"
    if metric == "judge":
        return f"metrics.judge(criteria, min={value})"
    factory = builtin_registry().get(metric)
    if bound not in _parameters(factory):
        return (f"{metric} has a fixed bound (it takes no {bound}=); to gate its value at {value}, record it with "
                f"a @metric(..., {bound}={value}) of your own")
    shown = "".join(f"{a!r}, " for a in args)
    if metric in metrics.__all__:
        return f"metrics.{metric}({shown}{bound}={value})"
    return f"llm_metrics.check({metric!r}, {shown}{bound}={value})"


def _parameters(factory: Any) -> set[str]:
    if isinstance(factory, MetricFactory):
        return {"min", "max"}
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return {"min", "max"}


def run(labels: Path, metric: str, *, max_false_pass: float | None, cli: dict[str, Any],
        direction: bool | None = None) -> Report:
    """Measure, then calibrate: the `Report` of the ``calibrate`` command."""
    inipath, ini = find_ini(labels.resolve().parent)
    rootpath = inipath.parent if inipath else Path.cwd()
    config = cast(pytest.Config, FileConfig(cli, ini, inipath, rootpath))
    try:
        options.check_config(config)
        providers = options.provider_options(config)
    except pytest.UsageError as exc:
        raise CalibrationError(str(exc)) from None
    looked = _import_conftests(rootpath, labels.resolve().parent, ini.get("testpaths", ""))
    if metric not in ("similarity", "judge"):
        try:
            builtin_registry().get(metric)
        except ConfigError as exc:
            raise CalibrationError(f"--metric: {exc} (@metric functions are read from {looked})") from None
    rows = load_rows(labels, metric)
    engine = semantic_engine.for_run(options.get(config, "llm_embedding_model"), options.get(config, "llm_device"),
                                     options.metrics_dir(config) / "cache",
                                     threshold=options.similarity_threshold(config))
    previous = semantic_engine.activate(engine)
    models = ModelCache(rootpath, providers)
    mode = str(options.get(config, "llm_record_mode"))
    recorder = _Recorder(config, mode, labels, metric) if mode != "off" else None
    judges = Judges(models, str(options.get(config, "llm_judge_model")),
                    recorder.wrap if recorder is not None else None)
    token = JUDGES.set(judges)
    try:
        measured, failed, direction = measure(rows, metric, labels, direction)
    finally:
        JUDGES.reset(token)
        semantic_engine.activate(previous)
        if recorder is not None:
            recorder.save()
    if direction is None:
        raise CalibrationError(f"metric {metric!r} has no direction (higher or lower is better), so no threshold "
                               "can be chosen for it; say which with --direction higher|lower")
    values = [v for _, v in measured]
    labels_ = [r.label for r, _ in measured]
    good = sum(labels_)
    if good in (0, len(labels_)):
        raise CalibrationError(f"{labels}: too few rows could be measured to calibrate ({len(labels_)} of "
                               f"{len(rows)}): {'; '.join(failed[:3])}")
    chosen = best(values, labels_, direction)
    assert chosen is not None
    low, high = kappa_interval(values, labels_, chosen.threshold, direction)
    strict = best(values, labels_, direction, max_false_pass) if max_false_pass is not None else None
    # The paste line repeats a registered metric's arguments when every row gives the same ones.
    shared = rows[0].args if all(r.args == rows[0].args for r in rows) else ()
    return Report(metric, str(labels), len(measured), good, len(labels_) - good, direction, chosen, low, high,
                  paste_line(metric, chosen.threshold, direction, shared), strict,
                  paste_line(metric, strict.threshold, direction, shared) if strict else None, max_false_pass, failed)


def _import_conftests(rootpath: Path, folder: Path, testpaths: str) -> str:
    """Import the conftest.py files from the rootdir down to the labels' folder and to each of the ini's
    ``testpaths``: their ``@metric`` functions. Returns where it looked, for messages."""
    folders: list[Path] = []
    for target in [folder] + [rootpath / t for t in testpaths.split()]:
        chain = [p for p in (*reversed(target.parents), target) if p == rootpath or rootpath in p.parents]
        folders += [p for p in chain if p not in folders]
    for path in (p / "conftest.py" for p in folders):
        if not path.is_file():
            continue
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(f"llmmetrics_conftest_{abs(hash(path))}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 -- a user's file: say which and why
            raise CalibrationError(f"{path}: importing it failed: {type(exc).__name__}: {scrub(str(exc))}") from None
    shown = [str(p.relative_to(rootpath) / "conftest.py") if p != rootpath else "conftest.py" for p in folders]
    return ", ".join(shown) + f" under {rootpath}"


class _Recorder:
    """Judge calls of a calibration, recorded in ``__recordings__/<labels>.llm.json`` next to the labels file."""

    def __init__(self, config: Any, mode: str, labels: Path, metric: str) -> None:
        self._recordings = Recordings(config, mode, writer=True)
        self._pending: list[dict[str, Any]] = []
        path = labels.resolve()
        self._sender = Sender(recording_path(path), f"calibrate {path.name}", config.rootpath, Path.cwd(),
                              f"python -m pytest_llmmetrics calibrate {labels} --metric {metric} "
                              "--llm-record-mode new_episodes")

    def wrap(self, model: Any) -> Any:
        return self._recordings.wrap_for(model, self._sender, self._pending)

    def save(self) -> None:
        file = show_path(self._sender.path, self._sender.rootpath)
        self._recordings.collect(self._pending, ran=(file, self._sender.test))
        self._recordings.write()
        for line in self._recordings.written + self._recordings.skipped:
            print(line, file=sys.stderr)
