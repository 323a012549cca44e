"""The option table: every ``--llm-*`` flag and ini key, resolved CLI -> ini -> default and checked at start-up."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.providers.spec import DEFAULT_SPEC, ProviderOptions, check_spec
from pytest_llmmetrics.values import (
    DEVICES,
    device_problem,
    number_problem,
    threshold_problem,
)

GROUP = "llmmetrics"
RECORD_MODES = ("off", "none", "once", "new_episodes", "all")


@dataclass(frozen=True)
class Option:
    """One setting: a CLI flag and/or an ini key, resolved CLI -> ini -> default."""

    ini: str | None
    flag: str | None
    help: str
    default: Any = None
    ini_type: str = "string"
    choices: tuple[str, ...] | None = None
    multiple: bool = False  # the flag may be given several times (a list)

    @property
    def dest(self) -> str:
        return (self.flag or f"--{self.ini}").lstrip("-").replace("-", "_")

    @property
    def label(self) -> str:
        return " / ".join(x for x in (self.flag, self.ini) if x)


OPTIONS: dict[str, Option] = {
    o.dest: o
    for o in [
        Option("llm_model", "--llm-model", "Model for the llm and allm fixtures: local, openai:<model> or "
               "py:<module>:<callable> (default: local). Give it several times for the model matrix: each test "
               "using llm or allm runs once per model, compared with the first", default=DEFAULT_SPEC,
               multiple=True),
        Option("llm_models", None, "The model matrix in the ini file: model specs separated by spaces or new "
               "lines; each test using llm or allm runs once per model, compared with the first (instead of "
               "llm_model)", ini_type="args"),
        Option("llm_judge_model", "--llm-judge-model", "Model that grades metrics.judge() checks without a "
               "model= of their own: local, openai:<model> or py:<module>:<callable> (default: local)",
               default=DEFAULT_SPEC),
        Option("llm_base_url", "--llm-base-url", "Base URL of the OpenAI-compatible server for openai: models, "
               "e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL, else OpenAI's)"),
        Option("llm_timeout", "--llm-timeout", "Seconds to wait for one answer of any model (local, py:, "
               "openai: per attempt, before retrying); a test whose model does not answer in time fails; "
               "0 for no limit (default: 60)", default="60"),
        Option("llm_max_retries", "--llm-max-retries", "Retries of an openai: request after a 429, a 5xx, a "
               "timeout or a connection error, with exponential backoff and jitter (default: 3)", default="3"),
        Option("llm_retry_backoff", None, "Seconds before the first retry of an openai: request; doubles "
               "per retry, up to 30 s (default: 1.0)", default="1.0"),
        Option("llm_concurrency", None, "Most requests llm.sample() sends at once to an openai: server "
               "(default: 8)", default="8"),
        Option("llm_embedding_model", "--llm-embedding-model", "Sentence-transformers model name or path for "
               "semantic similarity (default: the packaged all-MiniLM-L6-v2)"),
        Option("llm_device", "--llm-device", f"Where embeddings run: {DEVICES} (default: auto)",
               default="auto"),
        Option("llm_similarity_threshold", None, "Default similarity threshold of semantic snapshots and "
               "similarity(), in (0, 1] (default: 0.8)", default="0.8"),
        Option("llm_record_mode", "--llm-record-mode", "Reply recording: off, none, once, new_episodes or all "
               "(default: off)", default="off", choices=RECORD_MODES),
        Option("llm_metrics_dir", None, "Directory of the metric baseline, run history and embedding cache "
               "(default: .llmmetrics at the rootdir)", default=".llmmetrics"),
        Option("llm_fail_on_regression", "--llm-fail-on-regression", "Exit non-zero when a metric regressed "
               "against the baseline, even if every test passed", default=False, ini_type="bool"),
        Option(None, "--llm-baseline-update", "Accept this run's metrics as the new baseline", default=False,
               ini_type="bool"),
        Option("llm_report_json", "--llm-report-json", "Write the metric report as JSON to this path"),
        Option("llm_report_html", "--llm-report-html", "Write the metric report as one self-contained HTML file "
               "(pooled trends, moved metrics, a drill-down per test) to this path"),
        Option("llm_tolerance", "--llm-tolerance", "Regression tolerances: a default and NAME:VALUE pairs, "
               "absolute or relative, e.g. '0.01,similarity:0.02,latency_s:10%'"),
    ]
}


def add_options(parser: pytest.Parser) -> None:
    """Register every flag and ini key in one option group (flags default to None: unset)."""
    group = parser.getgroup(GROUP, "LLM regression testing (pytest-llmmetrics)")
    for opt in OPTIONS.values():
        flag_help = opt.help.replace("%", "%%")  # argparse formats help with %
        if opt.flag:
            if opt.ini_type == "bool":
                group.addoption(opt.flag, action="store_true", default=None, dest=opt.dest, help=flag_help)
            elif opt.multiple:
                group.addoption(opt.flag, action="append", default=None, dest=opt.dest, metavar="VALUE",
                                help=flag_help)
            else:
                group.addoption(opt.flag, action="store", default=None, dest=opt.dest, metavar="VALUE",
                                help=flag_help)
        if opt.ini:
            parser.addini(opt.ini, opt.help, type=opt.ini_type, default=None)  # type: ignore[arg-type]


def get(config: pytest.Config, dest: str) -> Any:
    """The value of an option: CLI flag, else ini key, else its default (a flag given several times: the last)."""
    if dest == "llm_model":
        return models(config)[0]
    opt = OPTIONS[dest]
    if opt.flag:
        value = config.getoption(dest, None)
        if isinstance(value, list):
            value = value[-1] if value else None
        if value is not None:
            return value
    if opt.ini:
        value = _ini(config, opt.ini)
        if value not in (None, "", []):
            return value
    return opt.default


def _ini(config: pytest.Config, name: str) -> Any:
    """``config.getini``; a value pytest cannot parse (``= maybe`` for a bool) is a usage error naming the key.

    pytest 8 raises a bare ``ValueError``, pytest 9 a ``UsageError``; neither names the key.
    """
    try:
        return config.getini(name)
    except (ValueError, pytest.UsageError) as exc:
        where = f" in {config.inipath}" if config.inipath else ""
        raise pytest.UsageError(
            f"{name}{where}: {exc}; write true or false (yes/no, on/off and 1/0 work too)"
        ) from None


def models(config: pytest.Config) -> list[str]:
    """The models under test, in order: ``--llm-model`` (each time given), else ``llm_models``, else
    ``llm_model``, else ``local``. Two or more make the model matrix; a spec given twice counts once."""
    return _models_and_source(config)[0]


def _models_and_source(config: pytest.Config) -> tuple[list[str], str]:
    """``models()``, and where they came from, for error messages: ``--llm-model``, ``llm_models in
    tox.ini``, ``llm_model in pytest.ini`` or the default."""
    given = config.getoption("llm_model", None)
    if isinstance(given, str):
        given = [given]
    source = "--llm-model"
    if not given:
        listed = _ini(config, "llm_models")
        if isinstance(listed, str):  # the calibrate command reads the ini file's raw text
            listed = shlex.split(listed)
        single = _ini(config, "llm_model")
        where = f" in {config.inipath}" if config.inipath else ""
        for name, value in (("llm_models", listed), ("llm_model", single)):
            if value is not None and not value:  # written, with nothing after the "="
                overridden = any(str(o).split("=", 1)[0].strip() == name
                                 for o in getattr(config.option, "override_ini", None) or ())
                plural = name == "llm_models"
                raise pytest.UsageError(
                    f"{name}{f' (-o {name}=)' if overridden else where} is empty: name the model{'s' if plural else ''}"
                    f" ({name} = {'local openai:gpt-4o-mini' if plural else 'openai:gpt-4o-mini'}), "
                    "or remove the line to test the embedded local model")
        if listed and single:
            raise pytest.UsageError(
                f"llm_model and llm_models are both set{where}; keep one: llm_model for one model, llm_models "
                "for the model matrix (several models, each test run once per model)")
        given = list(listed or ()) or ([single] if single else [DEFAULT_SPEC])
        name = "llm_models" if listed else "llm_model" if single else "the default llm_model"
        source = f"{name} in {config.inipath.name}" if config.inipath and (listed or single) else name
    return list(dict.fromkeys(str(spec) for spec in given)), source


def _is_set(config: pytest.Config, opt: Option) -> bool:
    if opt.flag and config.getoption(opt.dest, None) is not None:
        return True
    return bool(opt.ini and _ini(config, opt.ini) not in (None, "", [], False))


def check_config(config: pytest.Config) -> None:
    """Reject unusable option values at start-up, before any test runs."""
    for opt in OPTIONS.values():
        if not _is_set(config, opt):
            continue
        value = get(config, opt.dest)
        if opt.choices and value not in opt.choices:
            raise pytest.UsageError(
                f"{opt.label}: {value!r} is not one of {', '.join(opt.choices)}"
            )
    specs, source = _models_and_source(config)
    for spec in specs:
        try:
            check_spec(spec)
        except ConfigError as exc:
            raise pytest.UsageError(f"{source}: {exc}") from None
    try:
        check_spec(str(get(config, "llm_judge_model")))
    except ConfigError as exc:
        raise pytest.UsageError(f"--llm-judge-model / llm_judge_model: {exc}") from None
    problem = device_problem(get(config, "llm_device"))
    if problem:
        raise pytest.UsageError(f"--llm-device / llm_device: {problem}")
    similarity_threshold(config)
    provider_options(config)


# Numeric provider settings: name -> (type, smallest allowed value, example).
_PROVIDER_NUMBERS = {
    "llm_timeout": (float, 0.0, "30"),  # 0: no limit
    "llm_max_retries": (int, 0, "3"),
    "llm_retry_backoff": (float, 0.0, "0.5"),
    "llm_concurrency": (int, 1, "4"),
}


def provider_options(config: pytest.Config) -> ProviderOptions:
    """What the providers need from the options, checked (a bad value is a usage error)."""
    values: dict[str, Any] = {}
    for dest, (kind, lo, example) in _PROVIDER_NUMBERS.items():
        raw = get(config, dest)
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or number_problem(value, lo, integer=kind is int):
            raise pytest.UsageError(
                f"{OPTIONS[dest].label}: {raw!r} must be {'an integer' if kind is int else 'a number'} "
                f">= {lo:g}, e.g. {example}"
            )
        values[dest[len("llm_"):]] = value
    if values["timeout"] == 0:
        values["timeout"] = None  # no limit: models are called directly, on the test's own thread
    base_url = get(config, "llm_base_url")
    if base_url is not None and not re.match(r"^https?://[^/\s]+", str(base_url)):
        raise pytest.UsageError(
            f"--llm-base-url / llm_base_url: {base_url!r} is not an http(s) URL; "
            "write e.g. http://127.0.0.1:8000/v1"
        )
    return ProviderOptions(base_url=base_url or None, **values)


def similarity_threshold(config: pytest.Config) -> float:
    raw = get(config, "llm_similarity_threshold")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if threshold_problem(value):
        raise pytest.UsageError(f"llm_similarity_threshold: {threshold_problem(raw)}")
    return value


def metrics_dir(config: pytest.Config) -> Path:
    """``llm_metrics_dir``, relative to the rootdir."""
    return config.rootpath / str(get(config, "llm_metrics_dir"))
