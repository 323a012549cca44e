"""Exceptions whose message is written for the user, not a traceback."""

from __future__ import annotations


class LLMMetricsError(Exception):
    """Base class: the message alone says what went wrong and what to do."""


class ConfigError(LLMMetricsError):
    """Bad configuration: an option, a marker argument, a model spec, a metric name."""


class MetricError(LLMMetricsError):
    """A metric could not be measured on this reply (e.g. the model gave no token counts)."""


class Unmeasured(MetricError):
    """A check could not measure one reply (a judge reply that could not be read): the check misses, saying why."""


class ModelError(LLMMetricsError):
    """The model under test could not be called or gave something unusable."""


class ReplyError(ConfigError, TypeError):
    """A value used as a reply is not one: a `Response` whose text is not a str, ``expect(None)``.

    Also a `TypeError`, which is what Python code raises for a value of the wrong type.
    """


class LLMMetricsWarning(UserWarning):
    """Something worth knowing that does not fail a test (a text cut for the embedding model, a dropped cache)."""
