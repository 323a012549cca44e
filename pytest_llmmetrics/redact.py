"""Secrets stay out of everything the plugin writes or prints: the one home of redaction."""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from re import Pattern
from typing import Any

import pytest

REDACTED = "<redacted>"
_SECRET_PARAM = re.compile(r"(^|_)(api_?key|key|token|secret|password|authorization|auth)$", re.I)
_SECRET_ENV = ("_KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "CREDENTIALS", "_PAT")  # name endings

# Credential formats by kind, most specific first. `detectors.find_pii` uses these for its "key" kind.
# Not after a letter or digit (so "task-..." is no "sk-" key), but after "_" or "=" too: "m_AKIA...", "key=ghp_...".
_START = r"(?<![A-Za-z0-9])"
CREDENTIAL_PATTERNS: dict[str, str] = {
    "private-key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)?",
    "openai-key": _START + r"sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
    "github-token": _START + r"gh[pousr]_[A-Za-z0-9]{36,}|" + _START + r"github_pat_[A-Za-z0-9_]{22,}",
    "aws-key": r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])",
    "slack-token": _START + r"xox[abprs]-[A-Za-z0-9-]{10,}",
    "google-key": _START + r"AIza[0-9A-Za-z_-]{35}",
    "stripe-key": _START + r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    "jwt": _START + r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    "bearer-token": r"(?<=Bearer )[A-Za-z0-9._~+/-]{16,}=*",
}


@functools.cache
def credential_regex() -> Pattern[str]:
    """One regex for every credential format; the group name is the kind."""
    return re.compile("|".join(f"(?P<{kind.replace('-', '_')}>{p})" for kind, p in CREDENTIAL_PATTERNS.items()))


def looks_secret(value: str) -> bool:
    """A value that looks like a key or token: one word of 12+ characters, mixed, and not a plain word or path.

    Ordinary phrases (``"fine answer"``), short words, numbers, paths and URLs
    are not secrets, even in a variable called ``*_KEY``; a credential format
    always is.
    """
    if credential_regex().search(value):
        return True
    if len(value) < 12 or any(c.isspace() for c in value) or value.startswith(("/", "~", ".")) or "://" in value:
        return False
    classes = sum(any(test(c) for c in value) for test in (str.islower, str.isupper, str.isdigit))
    if classes < 2:
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.0


def safe_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as written and keyed: JSON values, anything key-like redacted."""
    plain = json.loads(json.dumps(dict(params), sort_keys=True, default=repr))
    return {k: (REDACTED if _SECRET_PARAM.search(k) else v) for k, v in plain.items()}


def env_secrets() -> dict[str, str]:
    """Secret-looking values of secret-named environment variables, each with what replaces it."""
    names = [k for k in os.environ if k.upper().endswith(_SECRET_ENV)]
    found = {v: f"<redacted:{k}>" for k in names if looks_secret(v := os.environ[k])}
    return dict(sorted(found.items(), key=lambda item: -len(item[0])))  # longest first: no half-replaced value


def scrub(value: Any, secrets: Mapping[str, str] | None = None) -> Any:
    """``value`` (text, or lists and dicts of it, keys included) with every secret replaced.

    - Parameters whose names look like keys or tokens (``api_key``, ``token``,
      ``auth``, ``password``, ...) are written as ``<redacted>``; a request is
      keyed by the redacted form, so a replay does not need the secret either.
    - Well-known credential formats (OpenAI ``sk-``/``sk-proj-``, GitHub
      ``ghp_``/``github_pat_``, AWS ``AKIA``, Slack ``xox[abp]-``, Google
      ``AIza``, Stripe, JWTs, ``Bearer`` tokens, private-key blocks) are replaced
      by ``<redacted:KIND>`` wherever they appear.
    - The values of environment variables named like ``*_KEY``, ``*TOKEN``,
      ``*SECRET``, ``*PASSWORD`` or ``*CREDENTIALS`` are replaced by
      ``<redacted:NAME>``, but only values that look like secrets (see
      `looks_secret`): ``MY_KEY="fine answer"`` rewrites nothing.
    """
    if secrets is None:
        secrets = env_secrets()
    if isinstance(value, str):
        for secret, name in secrets.items():
            if secret in value:
                value = value.replace(secret, name)
        if any(marker in value for marker in _MARKERS):
            value = credential_regex().sub(_replacement, value)
        return value
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {scrub(k, secrets) if isinstance(k, str) else k: scrub(v, secrets) for k, v in value.items()}
    return value


# A cheap pre-check: every credential format contains one of these.
_MARKERS = ("-----BEGIN", "sk-", "gh", "github_pat_", "AKIA", "ASIA", "xox", "AIza", "k_live_", "k_test_", "eyJ",
            "Bearer ")


def _replacement(match: re.Match[str]) -> str:
    return f"<redacted:{(match.lastgroup or 'secret').replace('_', '-')}>"


# The start of every credential format: enough to know what a token cut short was.
_CUT_PREFIXES = re.compile(r"(?:sk-|gh[pousr]_|github_pat_|AKIA|ASIA|xox[abprs]-|AIza|[sr]k_(?:live|test)_|eyJ)"
                           r"[A-Za-z0-9_-]{4,}$")
_ELLIPSES = ("...", "\u2026")


def scrub_cut(text: str, secrets: Mapping[str, str] | None = None) -> str:
    """`scrub`, and also the pieces of secrets around an ellipsis, for text shortened for display.

    pytest shortens long values in assertion messages to ``start...end``: a
    token cut in two no longer matches its format, and a cut environment
    value no longer equals itself. A run of 8 or more characters that starts
    or ends a secret next to the ellipsis, a cut token that starts like a
    credential, and a word there that looks like a secret are redacted too.
    """
    if secrets is None:
        secrets = env_secrets()
    text = scrub(text, secrets)
    if not any(e in text for e in _ELLIPSES):
        return text
    pieces = re.split(r"(\.\.\.|\u2026)", text)
    for i in range(0, len(pieces), 2):
        before, after = i + 1 < len(pieces), i > 0  # this piece ends / starts at an ellipsis
        if before:
            pieces[i] = _cut(pieces[i], secrets, at_end=True)
        if after:
            pieces[i] = _cut(pieces[i], secrets, at_end=False)
    return "".join(pieces)


def _cut(piece: str, secrets: Mapping[str, str], *, at_end: bool) -> str:
    """``piece`` with the secret part of its word next to an ellipsis (its last word, or its first) redacted."""
    run = re.search(r"[^\s'\"]+$", piece) if at_end else re.match(r"[^\s'\"]+", piece)
    if not run:
        return piece
    word = run.group()

    def redact(length: int, name: str) -> str:
        return piece[: len(piece) - length] + name if at_end else name + piece[length:]

    for secret, name in secrets.items():
        for k in range(len(secret) - 1, 7, -1):  # the start of a secret before "...", its end after it
            if word.endswith(secret[:k]) if at_end else word.startswith(secret[-k:]):
                return redact(k, name)
    token = _CUT_PREFIXES.search(word) if at_end else None
    if token:  # a credential cut short: its format's start is there
        return redact(len(token.group()), "<redacted:secret>")
    if looks_secret(word):  # the other piece of a token whose format was cut off
        return redact(len(word), "<redacted:secret>")
    return piece


SECRETS_KEY = pytest.StashKey["dict[str, str]"]()


def session_secrets(config: pytest.Config) -> dict[str, str]:
    """The environment's secrets (`env_secrets`), read once a session (reading the environment costs ~40 us)."""
    secrets = config.stash.get(SECRETS_KEY, None)
    if secrets is None:
        secrets = config.stash[SECRETS_KEY] = env_secrets()
    return secrets
