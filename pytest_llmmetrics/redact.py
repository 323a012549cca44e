"""Secrets stay out of every file the plugin writes: recordings, baselines, reports and snapshots.

- Parameters whose names look like keys or tokens (``api_key``, ``token``,
  ``auth``, ``password``, ...) are written as ``<redacted>``; a request is
  keyed by the redacted form, so a replay does not need the secret either.
- The values of environment variables named like ``*_KEY``, ``*TOKEN``,
  ``*SECRET`` or ``*PASSWORD`` (8 characters or more) are replaced by
  ``<redacted:NAME>`` wherever they would appear in written text, e.g. a
  reply that echoes a prompt which contained one.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

REDACTED = "<redacted>"
_SECRET_PARAM = re.compile(r"(^|_)(api_?key|key|token|secret|password|authorization|auth)$", re.I)
_SECRET_ENV = re.compile(r"(_KEY|TOKEN|SECRET|PASSWORD)$")


def safe_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as written and keyed: JSON values, anything key-like redacted."""
    plain = json.loads(json.dumps(dict(params), sort_keys=True, default=repr))
    return {k: (REDACTED if _SECRET_PARAM.search(k) else v) for k, v in plain.items()}


def env_secrets() -> dict[str, str]:
    """Secret-looking environment values, each with what replaces it."""
    return {v: f"<redacted:{k}>" for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}


def scrub(value: Any, secrets: Mapping[str, str] | None = None) -> Any:
    """``value`` (text, or lists and dicts of it) with every secret-looking environment value replaced."""
    if secrets is None:
        secrets = env_secrets()
    if not secrets:
        return value
    if isinstance(value, str):
        for secret, name in secrets.items():
            value = value.replace(secret, name)
        return value
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    return value
