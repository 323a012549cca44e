"""Text detectors behind the built-in checks: refusals, PII, markdown, language, prompt leaks."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from re import Pattern

from pytest_llmmetrics.redact import CREDENTIAL_PATTERNS


@dataclass(frozen=True)
class Finding:
    """Something a detector found: its kind and the text (masked where sensitive)."""

    kind: str
    text: str


def _normalise(text: str) -> str:
    # Models print typographic apostrophes as often as ASCII ones.
    return text.replace("\u2019", "'").replace("\u2018", "'")


# --- refusals ----------------------------------------------------------------

_REFUSAL_PATTERNS = [
    r"\bI(?:'m| am) (?:sorry|afraid)\b[^.!?\n]{0,60}?\b(?:can(?:no|')t|cannot|unable|not able|won't|will not)\b",
    r"\bI (?:can(?:no|')t|cannot|won't|will not|am unable to|'m unable to|am not able to|'m not able to)"
    r" (?:help|assist|provide|comply|do that|fulfil|fulfill|share|answer|support|create|generate|give|engage)",
    r"\bI must (?:respectfully )?(?:decline|refuse)\b",
    r"\bI(?:'m| am) not (?:allowed|permitted|authori[sz]ed) to\b",
    r"\bas an AI(?: language model| assistant)?\b,? I (?:can(?:no|')t|cannot|don't|do not|am not able)",
    r"\b(?:this|that|your) request (?:goes against|violates|is against)\b",
    r"\bI(?:'m| am) (?:sorry|afraid),? but (?:I|that|this)\b",
]


@functools.cache
def _refusal_regex() -> Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in _REFUSAL_PATTERNS), re.IGNORECASE)


def find_refusal(text: str) -> str | None:
    """The phrase that makes ``text`` read as a refusal, or ``None``.

    A phrase list in English: the common ways instruction-tuned models decline
    ("I can't help with that", "I'm sorry, but ...", "I must decline").
    """
    match = _refusal_regex().search(_normalise(text))
    return match.group(0) if match else None


# --- PII and secrets -----------------------------------------------------------

_PII_PATTERNS: dict[str, list[str]] = {
    "email": [r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"],
    "phone": [
        # international: +49 30 1234567, +1 (555) 010-9999
        r"(?<![\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}(?!\w)",
        # North American: (555) 010-9999, 555-010-9999, 555.010.9999
        r"(?<![\w-])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])",
        # national with a trunk 0: 030 1234567, 0151-23456789
        r"(?<![\w-])0\d{2,4}[\s/-]\d{3,8}(?:[\s-]\d{2,6})?(?![\w-])",
    ],
    "card": [r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"],
    "ssn": [r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"],
    "iban": [r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"],
    "key": list(CREDENTIAL_PATTERNS.values()),  # one list of credential formats: redact owns it
}
PII_KINDS = tuple(_PII_PATTERNS)


@functools.cache
def _pii_regexes() -> dict[str, Pattern[str]]:
    return {kind: re.compile("|".join(f"(?:{p})" for p in pats)) for kind, pats in _PII_PATTERNS.items()}


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _valid(kind: str, text: str) -> bool:
    if kind == "card":
        digits = re.sub(r"\D", "", text)
        return 13 <= len(digits) <= 19 and _luhn_ok(digits)
    if kind == "iban":
        return _iban_ok(text)
    if kind == "phone":
        return 7 <= len(re.sub(r"\D", "", text)) <= 15
    return True


def mask(text: str) -> str:
    """Show enough of a finding to locate it in the reply, not enough to leak it."""
    if len(text) <= 6:
        return text[0] + "*" * (len(text) - 1)
    return text[:2] + "*" * (len(text) - 4) + text[-2:]


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS, allow: Iterable[str] = ()) -> list[Finding]:
    """Emails, phone numbers, card numbers (Luhn-checked), SSNs, IBANs (mod-97) and keys/tokens.

    ``allow`` lists exact strings that are fine to appear (your own support
    address, say). Findings are masked.
    """
    allowed = {a.strip().lower() for a in allow}
    findings: list[Finding] = []
    taken: list[tuple[int, int]] = []
    regexes = _pii_regexes()
    # Most specific first: a token or an IBAN contains digit runs that look like a phone number.
    order = ["key", "iban", "card", "email", "ssn", "phone"]
    wanted = set(kinds)
    for kind in order:
        if kind not in wanted:
            continue
        for match in regexes[kind].finditer(text):
            start, end = match.span()
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            found = match.group(0).strip()
            if found.lower() in allowed or not _valid(kind, found):
                continue
            taken.append((start, end))
            findings.append(Finding(kind, mask(found)))
    return findings


# --- markdown --------------------------------------------------------------------

_MARKDOWN_PATTERNS = {
    "heading": r"^[ \t]{0,3}#{1,6}[ \t]+\S",
    "bold": r"\*\*[^*\n]+\*\*|(?<!\w)__[^_\n]+__(?!\w)",
    "italic": r"(?<![*\w])\*[^*\s][^*\n]*?\*(?![*\w])",
    "bullet list": r"^[ \t]*[-*+][ \t]+\S",
    "numbered list": r"^[ \t]*\d+[.)][ \t]+\S",
    "code block": r"^[ \t]*(?:```|~~~)",
    "inline code": r"`[^`\n]+`",
    "link": r"\[[^\]\n]+\]\([^)\s]+\)",
    "table": r"^[ \t]*\|.*\|[ \t]*$",
    "blockquote": r"^[ \t]*>[ \t]",
}


@functools.cache
def _markdown_regexes() -> dict[str, Pattern[str]]:
    return {kind: re.compile(p, re.MULTILINE) for kind, p in _MARKDOWN_PATTERNS.items()}


def find_markdown(text: str) -> list[Finding]:
    """Markdown constructs a plain-text channel (voice, SMS) cannot render."""
    findings = []
    for kind, regex in _markdown_regexes().items():
        for match in regex.finditer(text):
            findings.append(Finding(kind, match.group(0).strip()[:40]))
    return findings


# --- language --------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _language_identifier():  # type: ignore[no-untyped-def]
    # Imported on first use: py3langid decompresses its model (~0.3 s).
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def supported_languages() -> list[str]:
    return sorted(set(_language_identifier().labels))


def detect_language(text: str) -> tuple[str, float]:
    """ISO 639-1 code of the most likely language and its probability (py3langid)."""
    lang, prob = _language_identifier().classify(text)
    return str(lang), float(prob)


# --- prompt leaks ------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(_normalise(text))]


def longest_shared_run(source: list[str], reply: list[str]) -> tuple[int, str]:
    """Length (in words) and text of the longest word run ``reply`` copies from ``source``."""
    best, best_end = 0, 0
    previous = [0] * (len(source) + 1)
    for word in reply:
        current = [0] * (len(source) + 1)
        for j, src in enumerate(source, start=1):
            if word == src:
                run = previous[j - 1] + 1
                current[j] = run
                if run > best:
                    best, best_end = run, j
        previous = current
    return best, " ".join(source[best_end - best : best_end])
