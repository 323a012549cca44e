"""Test cases from data files: ``cases(path)`` gives ``pytest.param`` objects from JSON Lines, JSON, CSV or YAML."""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.files import json_value
from pytest_llmmetrics.redact import env_secrets, scrub

FORMATS = {".jsonl": "JSON Lines", ".ndjson": "JSON Lines", ".json": "JSON", ".csv": "CSV", ".yaml": "YAML",
           ".yml": "YAML"}
MARKS = ("skip", "xfail")


def cases(path: str | Path, *, id: str | None = None) -> list[Any]:
    """The cases in a data file as ``pytest.param`` objects, for ``@pytest.mark.parametrize("case", cases(...))``.

    ``path`` is relative to the test file that calls ``cases`` (or absolute). The
    file is JSON Lines (``.jsonl``: one object per line), JSON (``.json``: a list of
    objects), CSV (``.csv``: a header row, then one case per row; values are
    strings) or YAML (``.yaml``/``.yml``: a list of mappings; needs PyYAML). Each
    case is a dict. Its test id is its ``id`` field, else the field named by
    ``id=``, else ``line<N>``, the line it starts on. ``"skip": "reason"`` and
    ``"xfail": "reason"`` mark a case (and are not part of it). A bad file or
    case is an error naming ``file:line``: pytest reports it when it collects the
    test module.
    """
    __tracebackhide__ = True  # a collection error shows the user's line and the message, not our frames
    try:
        return _cases(path, id, sys._getframe(1).f_globals.get("__file__"))
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None


def _cases(path: str | Path, id: str | None, caller: str | None) -> list[Any]:
    file = _resolve(path, caller)
    if id is not None and (not isinstance(id, str) or not id):
        raise ConfigError(f"cases({str(path)!r}): id= names the field that gives each case's id, got {id!r}")
    if file.is_dir():
        raise ConfigError(f"{file}: is a folder; give cases() a data file")
    kind = FORMATS.get(file.suffix.lower())
    if kind is None:
        raise ConfigError(f"{file}: cases() reads {', '.join(sorted(FORMATS))} files; rename it or convert it")
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file (cases() paths are relative to the test file)") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a folder; give cases() a data file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Excel's CSV) is dropped
    except UnicodeDecodeError as exc:
        at = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, at) + 1
        raise ConfigError(f"{file}:{line}: not UTF-8 text (byte 0x{data[at]:02x}); save the file as UTF-8") from None
    rows = list({"JSON Lines": _jsonl, "JSON": _json, "CSV": _csv, "YAML": _yaml}[kind](text, file))
    if not rows:
        raise ConfigError(f"{file}: holds no cases")
    params: list[Any] = []
    seen: dict[str, int] = {}
    secrets = env_secrets()  # an id is shown everywhere a test is: a secret in it never is
    for line, case in rows:
        if not isinstance(case, dict):
            raise ConfigError(f"{file}:{line}: a case must be an object (a mapping of fields), got "
                              f"{type(case).__name__} {case!r:.60}")
        params.append(_param(dict(case), line, file, id, seen, secrets))
    return params


def _resolve(path: str | Path, caller: str | None) -> Path:
    if not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError(f"cases() takes the path of a data file, got {path!r}")
    given = Path(path)
    if given.is_absolute() or caller is None:
        return given
    return Path(caller).resolve().parent / given


def _param(case: dict[str, Any], line: int, file: Path, key: str | None, seen: dict[str, int],
           secrets: dict[str, str]) -> Any:
    marks = []
    for name in MARKS:
        if name in case:
            reason = case.pop(name)
            if not isinstance(reason, str) or not reason.strip():
                raise ConfigError(f"{file}:{line}: {name!r} gives the reason as a non-empty string, got {reason!r}")
            marks.append(pytest.mark.skip(reason=reason) if name == "skip" else pytest.mark.xfail(reason=reason))
    field = "id" if "id" in case else key
    if field is not None:
        if field not in case:
            raise ConfigError(f"{file}:{line}: no field {field!r} for the case's id (id={field!r}); add it, or "
                              "leave id= out for ids by line")
        value = case[field]
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
            raise ConfigError(f"{file}:{line}: the id field {field!r} must be a non-empty string or an int, "
                              f"got {value!r:.60}")
        ident = str(value)
    else:
        ident = f"line{line}"
    if ident in seen:
        raise ConfigError(f"{file}:{line}: the id {ident!r} is also the id of the case on line {seen[ident]}; "
                          "ids must be unique")
    seen[ident] = line
    return pytest.param(case, id=scrub(ident, secrets), marks=marks)


def _jsonl(text: str, file: Path) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            yield number, _whole(raw, file, number)


def _whole(text: str, file: Path, first_line: int) -> Any:
    """``text`` as one JSON value, nothing after it."""
    value, end = json_value(text, file, at=_skip(text, 0), first_line=first_line)
    if text[end:].strip():
        raise ConfigError(f"{file}:{first_line + text.count(chr(10), 0, end)}: more after the JSON value")
    return value


def _json(text: str, file: Path) -> Iterator[tuple[int, Any]]:
    """The elements of a JSON list, each with the line it starts on."""
    at = _skip(text, 0)
    if at == len(text):
        return  # an empty file: "holds no cases"
    if not text.startswith("[", at):
        _whole(text, file, 1)  # not JSON at all: say where
        raise ConfigError(f"{file}:{_line(text, at)}: a JSON case file is a list of objects: [{{...}}, {{...}}]")
    at = _skip(text, at + 1)
    if text.startswith("]", at):
        return
    while True:
        value, end = json_value(text, file, at=at)
        yield _line(text, at), value
        at = _skip(text, end)
        if text.startswith(",", at):
            at = _skip(text, at + 1)
            continue
        if text.startswith("]", at) and not text[_skip(text, at + 1):].strip():
            return
        raise ConfigError(f"{file}:{_line(text, at)}: expected ',' or the closing ']' of the list of cases")


_SPACE = re.compile(r"\s*")


def _skip(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


def _line(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1


def _csv(text: str, file: Path) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or any(not (name or "").strip() for name in reader.fieldnames):
        raise ConfigError(f"{file}:1: a CSV case file starts with a header row naming every column")
    if len(set(reader.fieldnames)) != len(reader.fieldnames):
        raise ConfigError(f"{file}:1: a column name appears twice in the header row")
    start = reader.line_num + 1
    try:
        for row in reader:
            if None in row:
                raise ConfigError(f"{file}:{start}: more values than columns in the header row")
            if any(value is None for value in row.values()):
                raise ConfigError(f"{file}:{start}: fewer values than columns in the header row")
            if any(v.strip() for v in row.values()):
                yield start, dict(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ConfigError(f"{file}:{reader.line_num}: not CSV: {exc}") from None


def _yaml(text: str, file: Path) -> Iterator[tuple[int, Any]]:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{file}: YAML case files need PyYAML: pip install pyyaml (or use .jsonl, .json, .csv)")\
            from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _unique_keys(root, file)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{file}:{line}: not YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return
    if not isinstance(data, list) or root is None or not isinstance(root, yaml.SequenceNode):
        raise ConfigError(f"{file}:1: a YAML case file is a list of mappings (- field: value)")
    yield from zip(_item_lines(text), data)


def _item_lines(text: str) -> Iterator[int]:
    """The line each item of the top-level list starts on. From the parser's events, not the composed nodes:
    an alias (``- *first``) is the node it names, which starts on the anchor's line."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if depth == 1 and isinstance(event, (yaml.NodeEvent, yaml.CollectionStartEvent)):
            yield event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _unique_keys(node: Any, file: Path) -> None:
    """A key twice in one mapping (what a merge that kept both sides leaves) is an error, never last-wins;
    the first such line in the file is named."""
    import yaml

    twice: list[tuple[int, int, str]] = []  # (line, line of the first, key)
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            keys: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in keys:
                        twice.append((line, keys[key.value], key.value))
                    else:
                        keys[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    if twice:
        line, first, key = min(twice)
        raise ConfigError(f"{file}:{line}: the field {key!r} is given twice (also on line {first}); keep one")
