"""Command-line/ini options and the per-test model settings from ``@pytest.mark.llm``."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import pytest

from .errors import ConfigError

if TYPE_CHECKING:
    from .providers import ProviderOptions

GROUP = "llmmetrics"
DEFAULT_MODEL = "local"
RECORD_MODES = ("off", "none", "once", "new_episodes", "all")
DEVICES_HELP = "auto, cpu, cuda, cuda:N or mps"
DEVICE_SYNTAX = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Option:
    """One setting: a CLI flag and/or an ini key, resolved CLI -> ini -> default."""

    ini: str | None
    flag: str | None
    help: str
    default: Any = None
    ini_type: str = "string"
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return (self.flag or f"--{self.ini}").lstrip("-").replace("-", "_")

    @property
    def label(self) -> str:
        return " / ".join(x for x in (self.flag, self.ini) if x)


OPTIONS: dict[str, Option] = {
    o.dest: o
    for o in [
        Option("llm_model", "--llm-model", "Default model for the llm fixture: local, openai:<model> or "
               "py:<module>:<callable> (default: local)", default=DEFAULT_MODEL),
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
        Option("llm_device", "--llm-device", f"Where embeddings run: {DEVICES_HELP} (default: auto)",
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
            else:
                group.addoption(opt.flag, action="store", default=None, dest=opt.dest, metavar="VALUE",
                                help=flag_help)
        if opt.ini:
            parser.addini(opt.ini, opt.help, type=opt.ini_type, default=None)  # type: ignore[arg-type]


def get(config: pytest.Config, dest: str) -> Any:
    """The value of an option: CLI flag, else ini key, else its default."""
    opt = OPTIONS[dest]
    if opt.flag:
        value = config.getoption(dest, None)
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


def _is_set(config: pytest.Config, opt: Option) -> bool:
    if opt.flag and config.getoption(opt.dest, None) is not None:
        return True
    return bool(opt.ini and _ini(config, opt.ini) not in (None, "", [], False))


def check_config(config: pytest.Config) -> None:
    """Reject unusable option values at start-up, before any test runs."""
    from .providers import check_spec

    for opt in OPTIONS.values():
        if not _is_set(config, opt):
            continue
        value = get(config, opt.dest)
        if opt.choices and value not in opt.choices:
            raise pytest.UsageError(
                f"{opt.label}: {value!r} is not one of {', '.join(opt.choices)}"
            )
    try:
        check_spec(str(get(config, "llm_model")))
    except ConfigError as exc:
        raise pytest.UsageError(f"--llm-model / llm_model: {exc}") from None
    if not DEVICE_SYNTAX.match(str(get(config, "llm_device"))):
        raise pytest.UsageError(
            f"--llm-device / llm_device: {get(config, 'llm_device')!r} is not one of {DEVICES_HELP}"
        )
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
    from .providers import ProviderOptions

    values: dict[str, Any] = {}
    for dest, (kind, lo, example) in _PROVIDER_NUMBERS.items():
        raw = get(config, dest)
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value) or value < lo:
            raise pytest.UsageError(
                f"{OPTIONS[dest].label}: {raw!r} must be {'an integer' if kind is int else 'a number'} "
                f">= {lo}, e.g. {example}"
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
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise pytest.UsageError(
            f"llm_similarity_threshold: {raw!r} must be a number in (0, 1], e.g. 0.85"
        )
    return value


def metrics_dir(config: pytest.Config) -> Path:
    """``llm_metrics_dir``, relative to the rootdir."""
    return config.rootpath / str(get(config, "llm_metrics_dir"))


# --- @pytest.mark.llm ----------------------------------------------------------------

MARKER_HELP = (
    "llm(model=None, system=None, temperature=0.0, max_tokens=256, seed=None, top_p=None, stop=None, "
    "presence_penalty=None, frequency_penalty=None, params=None): settings of the llm fixture for this "
    "test, class or module; closer markers win. params={...} passes provider-specific parameters."
)


@dataclass(frozen=True)
class LLMSettings:
    """What the ``llm`` fixture sends with every call of one test."""

    model: str = DEFAULT_MODEL
    system: str | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def call_params(self) -> dict[str, Any]:
        """The keyword arguments a model callable receives."""
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.seed is not None:
            params["seed"] = self.seed
        params.update(self.params)
        return params


def _number(lo: float, hi: float, *, lo_open: bool = False) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a number, got {value!r} ({type(value).__name__})"
        if value < lo or value > hi or (lo_open and value == lo):
            return f"must be {'>' if lo_open else '>='} {lo} and <= {hi}, got {value!r}"
        return None

    return check


def _integer(lo: int | None) -> Any:
    def check(value: Any) -> str | None:
        if value is None and lo is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an int, got {value!r} ({type(value).__name__})"
        if lo is not None and value < lo:
            return f"must be >= {lo}, got {value!r}"
        return None

    return check


def _string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    return f"must be a string, got {value!r} ({type(value).__name__})"


def _model(value: Any) -> str | None:
    from .providers import check_spec

    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be a model spec string, got {value!r} ({type(value).__name__})"
    try:
        check_spec(value)
    except ConfigError as exc:
        return str(exc)
    return None


def _stop(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return None
    return f"must be a string or a list of strings, got {value!r}"


def _params(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        return f"must be a dict with string keys, got {value!r}"
    return None


# Argument name -> validator returning an error text or None.
VALIDATORS: dict[str, Any] = {
    "model": _model,
    "system": _string,
    "temperature": _number(0.0, 2.0),
    "max_tokens": _integer(1),
    "seed": _integer(None),
    "top_p": _number(0.0, 1.0, lo_open=True),
    "stop": _stop,
    "presence_penalty": _number(-2.0, 2.0),
    "frequency_penalty": _number(-2.0, 2.0),
    "params": _params,
}
# Optional sampling parameters that are passed through only when given.
_PASS_THROUGH = ("top_p", "stop", "presence_penalty", "frequency_penalty")


def validate_kwargs(kwargs: Mapping[str, Any], where: str) -> None:
    """Raise `ConfigError` naming ``where``, the argument and the bad value."""
    for name, value in kwargs.items():
        validator = VALIDATORS.get(name)
        if validator is None:
            close = difflib.get_close_matches(name, list(VALIDATORS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown argument {name!r}{hint}. Known: {', '.join(VALIDATORS)}; "
                "pass provider-specific parameters as params={...}"
            )
        problem = validator(value)
        if problem:
            raise ConfigError(f"{where}: {name} {problem}")


def validate_marks(marks: Iterable[pytest.Mark], where: str) -> None:
    for mark in marks:
        if mark.args:
            raise ConfigError(
                f"{where}: @pytest.mark.llm takes keyword arguments only, got positional {mark.args!r}; "
                "write e.g. @pytest.mark.llm(model='py:mymodule:reply')"
            )
        validate_kwargs(mark.kwargs, f"{where}: @pytest.mark.llm")


def merge(marks: Iterable[pytest.Mark], default_model: str) -> LLMSettings:
    """Settings from the ``llm`` markers, closest first (closest wins per argument)."""
    merged: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for mark in marks:
        for key, value in mark.kwargs.items():
            if key == "params":
                for pk, pv in (value or {}).items():
                    params.setdefault(pk, pv)
            else:
                merged.setdefault(key, value)
    return apply(LLMSettings(model=default_model), merged, params)


def apply(base: LLMSettings, kwargs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> LLMSettings:
    """``base`` with ``kwargs`` (validated marker-style arguments) applied."""
    extra = dict(base.params)
    for name in _PASS_THROUGH:
        if kwargs.get(name) is not None:
            extra[name] = kwargs[name]
    extra.update(kwargs.get("params") or {})
    extra.update(params or {})
    return LLMSettings(
        model=kwargs.get("model") or base.model,
        system=kwargs.get("system", base.system),
        temperature=float(kwargs.get("temperature", base.temperature)),
        max_tokens=int(kwargs.get("max_tokens", base.max_tokens)),
        seed=kwargs.get("seed", base.seed),
        params=extra,
    )
