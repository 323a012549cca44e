"""Text the plugin prints or writes for people: control characters escaped, paths shown as typed."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

CELL_LIMIT = 100  # a terminal cell longer than this is shortened in the middle (the files keep it whole)


def printable(text: str) -> str:
    """``text`` with control characters, line breaks and escape codes shown as escapes (``\\n``, ``\\x1b``).

    Metric names and test ids come from user code; one with a line break or a
    terminal escape code must not break a table, a log line or an XML file.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def markdown_cell(text: str, *, code: bool = False) -> str:
    """``text`` as one cell of a Markdown table (GitHub flavour): one line, ``|`` escaped."""
    text = printable(text).replace("|", "\\|")
    if not code:
        return text
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def show_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators when it lies inside (the same on every OS), else as it is."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK, most emoji) characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def clip(text: str, limit: int = CELL_LIMIT) -> str:
    """``text`` shortened in the middle to at most ``limit`` characters (the start and the end tell ids apart)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head):]


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as aligned lines (two spaces apart, by terminal width), trailing spaces dropped."""
    widths = [max(width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell + " " * (w - width(cell)) for cell, w in zip(row, widths)).rstrip() for row in rows]
