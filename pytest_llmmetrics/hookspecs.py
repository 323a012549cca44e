"""Hook specifications other plugins implement to extend pytest-llmmetrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_llmmetrics.checks.registry import MetricRegistry


@pytest.hookspec()
def pytest_llmmetrics_register_metrics(registry: MetricRegistry, config: pytest.Config) -> None:
    """Register named metrics, so they work wherever a built-in metric does.

    Called once per session (again if plugins are registered later, such as a
    conftest.py in a subdirectory). Register a factory that returns a `Check`;
    tests then use it by name::

        # acme_checks.py, installed with a ``pytest11`` entry point (or in conftest.py)
        from pytest_llmmetrics import Check

        def polite(min=1):
            return Check("polite", lambda reply: "please" in reply.text.lower(), min=min)

        def pytest_llmmetrics_register_metrics(registry):
            registry.add("polite", polite)

        # in a test
        llm_metrics.expect(reply, "polite")
        llm_metrics.expect(reply, llm_metrics.check("polite", min=1))
    """
