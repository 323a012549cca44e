"""pytest-llmmetrics: LLM regression testing with micro-metrics, semantic snapshots and baselines."""

from __future__ import annotations

from .check import Check, Measurement, MetricRegistry, metric
from .errors import ConfigError, LLMMetricsError, MetricError, ModelError
from .response import Response

__version__ = "0.1.0.dev0"

__all__ = [
    "Check",
    "ConfigError",
    "LLMMetricsError",
    "Measurement",
    "MetricError",
    "MetricRegistry",
    "ModelError",
    "Response",
    "metric",
]
