"""Tracks and groups: a metric is *utility* (does the job), *alignment* (within policy) or *operations*."""

from __future__ import annotations

from typing import Any

TRACKS = ("utility", "alignment", "operations")

# Built-in defaults by metric kind; every other kind (custom ones included) is utility.
DEFAULT_TRACKS = {
    "refusal": "alignment",
    "no_refusal": "alignment",
    "no_pii": "alignment",
    "no_prompt_leak": "alignment",
    "language": "alignment",
    "latency_s": "operations",
    "latency": "operations",
    "tokens": "operations",
    "cost": "operations",
    "cost_usd": "operations",
}


def default_track(kind: str) -> str:
    """The track of a metric kind when nothing sets one."""
    return DEFAULT_TRACKS.get(kind, "utility")


def track_problem(value: Any) -> str | None:
    """Why ``value`` is not a track, or None."""
    if value in TRACKS:
        return None
    return f"must be one of {', '.join(repr(t) for t in TRACKS)}, got {value!r}"


def group_problem(value: Any) -> str | None:
    """Why ``value`` is not a group name (a non-empty string), or None."""
    if isinstance(value, str) and value.strip():
        return None
    return f"must be a non-empty string naming the group, e.g. group='billing', got {value!r}"


def module_of(nodeid: str) -> str:
    """A test's default group: its module, as the node id names it (``tests/test_bot.py``)."""
    return nodeid.split("::", 1)[0]
