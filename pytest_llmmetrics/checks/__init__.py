"""Checks: the `Check` type, the registry of named metrics with ``@metric``, and the text detectors."""
