"""Text the plugin prints or writes for people: control characters escaped, paths shown as typed."""

from __future__ import annotations

from pathlib import Path


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
