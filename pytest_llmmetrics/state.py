"""Process-wide tables that user code fills at import time (``@metric``, ``set_price``), put back after each run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Metrics made with @metric, by name (values: checks.registry.MetricFactory). Module-level on
# purpose: test modules and conftests define them at import, before any config exists to hold them.
DECORATED: dict[str, Any] = {}
# USD per million tokens, (input, output), by model name, for metrics.cost. Deliberately no vendor
# prices built in: they change, and a stale table would mislead.
PRICES: dict[str, tuple[float, float]] = {"local": (0.0, 0.0)}


def price_of(model: str, prices: Mapping[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """The price of ``model`` by its spec (``openai:gpt-4o-mini``) or bare name (``gpt-4o-mini``), or None."""
    table = PRICES if prices is None else prices
    bare = model.split(":", 1)[1] if ":" in model else model
    for key in (model, bare):
        if key in table:
            return table[key]
    return None


def save() -> Callable[[], None]:
    """Note both tables as they are now; the function returned puts them back.

    The plugin saves them before a run's conftests load and restores them when
    the run ends, so the metrics and prices of a pytester run inside another
    pytest run do not outlive it.
    """
    decorated, prices = dict(DECORATED), dict(PRICES)

    def restore() -> None:
        DECORATED.clear()
        DECORATED.update(decorated)
        PRICES.clear()
        PRICES.update(prices)

    return restore
