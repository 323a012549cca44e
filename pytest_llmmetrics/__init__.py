"""pytest-llmmetrics: LLM regression testing with micro-metrics, semantic snapshots and baselines."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_llmmetrics.case_files import cases
    from pytest_llmmetrics.checks.check import Check, Measurement
    from pytest_llmmetrics.checks.registry import MetricRegistry, metric
    from pytest_llmmetrics.errors import (
        ConfigError,
        LLMMetricsError,
        MetricError,
        ModelError,
    )
    from pytest_llmmetrics.response import Response

__version__ = "0.1.0.dev0"

# Public name -> module. Resolved on first access, so that loading the pytest
# plugin (which imports this package) costs nothing for suites that never use it.
_EXPORTS = {
    "cases": "case_files",
    "Check": "checks.check",
    "Measurement": "checks.check",
    "MetricRegistry": "checks.registry",
    "metric": "checks.registry",
    "ConfigError": "errors",
    "LLMMetricsError": "errors",
    "MetricError": "errors",
    "ModelError": "errors",
    "Response": "response",
    "metrics": "metrics",
}

__all__ = [
    "Check",
    "ConfigError",
    "LLMMetricsError",
    "Measurement",
    "MetricError",
    "MetricRegistry",
    "ModelError",
    "Response",
    "cases",
    "metric",
    "metrics",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_llmmetrics' has no attribute {name!r}")
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if name == module else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
