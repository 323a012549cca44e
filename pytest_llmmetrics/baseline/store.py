"""The committed ``baseline.json`` and the run history in ``llm_metrics_dir``: read strictly, written atomically."""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmmetrics.errors import ConfigError, LLMMetricsWarning
from pytest_llmmetrics.files import (
    atomic_write_text,
    ignored_folder,
    load_json,
    read_text,
)
from pytest_llmmetrics.tracks import group_problem, track_problem
from pytest_llmmetrics.values import LIMIT, is_number

FORMAT = 1
BASELINE = "baseline.json"
HISTORY = "history"
KEEP_RUNS = 50
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # a run's time in its history file: UTC, sorts as text
def _number(value: Any) -> bool:
    """A finite number within the range metric values are held to (`values.LIMIT`)."""
    return is_number(value) and abs(value) <= LIMIT


ENTRY_FIELDS: dict[str, Callable[[Any], bool]] = {
    "higher_is_better": lambda v: v is None or isinstance(v, bool),  # None: the metric has no direction
    "kind": lambda v: isinstance(v, str),
    "mean": _number,
    "n": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
}

# Fields that may be missing or null; when present they must make sense.
OPTIONAL_FIELDS: dict[str, Callable[[Any, dict[str, Any]], bool]] = {
    "passed": lambda v, e: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= e["n"],
    "std": lambda v, e: _number(v) and v >= 0,
    "scale": lambda v, e: v in ("binary", "numeric") and (v == "numeric" or 0 <= e["mean"] <= 1),
    "threshold": lambda v, e: isinstance(v, str),
    "track": lambda v, e: track_problem(v) is None,  # older baselines have neither: tracks by kind, group by module
    "group": lambda v, e: group_problem(v) is None,
}

_HINTS = {"track": "{!r} is not a track (utility, alignment or operations)",
          "group": "{!r} is not a group name (a non-empty string)"}

Tests = dict[str, dict[str, Any]]  # node id -> {"fingerprint": {...}, "metrics": {name: entry}}


_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
_line = _ENCODER.encode  # one encoder for thousands of lines: json.dumps builds one per call


def dumps_baseline(tests: Tests) -> str:
    """The baseline's text: one test per block, one metric per line, keys sorted.

    Written by hand rather than with ``json.dumps(indent=2)``, whose pure-Python
    encoder is ~10x slower on a baseline of thousands of tests; a changed
    metric shows in a git diff as one changed line.

    Layout of ``baseline.json`` (sorted keys, one metric per line, so a git diff
    shows each changed metric as one changed line)::

        {
          "format": 1,
          "tests": {
            "tests/test_bot.py::test_refund": {
              "fingerprint": {"model": "local", "params": "...", "prompt": "3f2a..."},
              "metrics": {
                "word_count": {"group": "tests/test_bot.py", "higher_is_better": false, "kind": "word_count",
                               "mean": 23.0, "n": 1, ..., "track": "utility"}
              }
            }
          }
        }

    Loading is strict (a hand-broken file is an error naming the file and the
    position, and is left untouched); history files are a cache and are skipped
    with a warning when unreadable.
    """
    out = ["{", f'  "format": {FORMAT},', '  "tests": {']
    items = sorted(tests.items())
    for i, (nodeid, test) in enumerate(items):
        out.append(f"    {_line(nodeid)}: {{")
        out.append(f'      "fingerprint": {_line(test.get("fingerprint") or {})},')
        out.append('      "metrics": {')
        metrics = sorted(test["metrics"].items())
        for j, (name, entry) in enumerate(metrics):
            out.append(f"        {_line(name)}: {_line(entry)}{',' if j < len(metrics) - 1 else ''}")
        out.append("      }")
        out.append("    }" + ("," if i < len(items) - 1 else ""))
    out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def load_baseline(path: Path) -> Tests | None:
    """The baseline's tests, or None when there is no baseline yet."""
    try:
        text = read_text(path, "Fix the file, or delete it and run pytest --llm-baseline-update; "
                               "it was left untouched.")
    except FileNotFoundError:
        return None
    data = load_json(text, path, "The baseline is broken; fix it (git diff / git checkout it), or delete it and "
                     "run pytest --llm-baseline-update. It was left untouched.")
    return validate(data, path, text)


def validate(data: Any, path: Path, text: str = "") -> Tests:
    """The baseline's tests, or a `ConfigError` naming the file, the line (when known) and the field."""

    def bad(where: str, what: str, *needles: str) -> ConfigError:
        line = _line_of(text, needles)
        # --llm-baseline-update reads the file too (it keeps entries), so re-recording means deleting it first.
        fix = ("Fix the file (git diff shows what changed), or delete it and run pytest --llm-baseline-update "
               "to record it again; it was left untouched.")
        return ConfigError(f"{path}:{line}: {where}: {what}. {fix}" if line else f"{path}: {where}: {what}. {fix}")

    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tests"), dict):
        raise bad("top level", f'expected {{"format": {FORMAT}, "tests": {{...}}}}')
    for nodeid, test in data["tests"].items():
        if not isinstance(test, dict) or not isinstance(test.get("metrics"), dict) \
                or not isinstance(test.get("fingerprint", {}), dict):
            raise bad(f"tests[{nodeid!r}]", 'expected {"fingerprint": {...}, "metrics": {...}}', nodeid)
        for name, entry in test["metrics"].items():
            where = f"tests[{nodeid!r}].metrics[{name!r}]"
            if not isinstance(entry, dict):
                raise bad(where, "expected an object", nodeid, name)
            for key, check in ENTRY_FIELDS.items():
                if key not in entry or not check(entry[key]):
                    raise bad(f"{where}.{key}", "missing or of the wrong type", nodeid, name)
            for key, valid in OPTIONAL_FIELDS.items():
                if entry.get(key) is not None and not valid(entry[key], entry):
                    raise bad(f"{where}.{key}", _HINTS.get(key, "{!r} is not valid here").format(entry[key]),
                              nodeid, name)
    tests: Tests = data["tests"]
    return tests


def _line_of(text: str, needles: tuple[str, ...]) -> int | None:
    """The line where the last of ``needles`` (JSON strings, in order) first appears, if it does."""
    position = 0
    for needle in needles:
        found = text.find(json.dumps(needle, ensure_ascii=False), position)
        if found < 0:
            return None
        position = found
    return text.count("\n", 0, position) + 1 if needles and text else None


def save_baseline(path: Path, tests: Tests) -> None:
    atomic_write_text(path, dumps_baseline(tests))


@dataclass
class Merged:
    """What accepting a run did to the baseline, for the summary line."""

    tests: Tests
    written: int = 0
    kept_failed: int = 0  # tests that failed this run keep their accepted entry
    not_added: int = 0  # new tests that failed: a failing run is not an accepted state
    kept_xfail: Counter[str] = field(default_factory=Counter)  # xfail tests ("xfailed"/"xpassed") keep theirs too
    not_added_xfail: Counter[str] = field(default_factory=Counter)  # new xfail tests: not added, but not news
    kept_not_run: int = 0  # skipped, deselected, a collection error, not reached
    removed: list[str] = field(default_factory=list)  # tests a complete collection no longer holds
    emptied: list[str] = field(default_factory=list)  # tests that passed and recorded nothing

    def summary(self, path: str) -> str:
        text = f"baseline updated: {self.written} tests written to {path}"
        kept = [f"{n} {why}" for n, why in ((self.kept_failed, "failed"), (self.kept_xfail["xfailed"], "xfailed"),
                                            (self.kept_xfail["xpassed"], "xpassed"),
                                            (self.kept_not_run, "did not run")) if n]
        if kept:
            total = self.kept_failed + sum(self.kept_xfail.values()) + self.kept_not_run
            text += f"; {total} earlier {'entry' if total == 1 else 'entries'} kept ({', '.join(kept)})"
        if self.not_added:
            text += f"; {self.not_added} new failing {'test' if self.not_added == 1 else 'tests'} not added"
        if self.not_added_xfail:
            n = sum(self.not_added_xfail.values())
            how = ", ".join(f"{self.not_added_xfail[k]} {k}" for k in ("xfailed", "xpassed") if self.not_added_xfail[k])
            text += f"; {n} new xfail {'test' if n == 1 else 'tests'} not added ({how})"
        if self.removed:
            text += f"; {len(self.removed)} vanished {'test' if len(self.removed) == 1 else 'tests'} removed"
        if self.emptied:
            text += f"; {len(self.emptied)} {'test' if len(self.emptied) == 1 else 'tests'} recording nothing removed"
        return text


def merge(old: Tests | None, current: Tests, *, passed: Collection[str], vanished: Collection[str],
          xfail: Mapping[str, str] | None = None, failed: Collection[str] = ()) -> Merged:
    """The updated baseline.

    Tests that passed replace their entries (a passing test that recorded
    nothing loses its entry). A test that failed keeps its earlier entry, and
    a new failing test is not added: a failing run is not an accepted state.
    Tests marked xfail that did not pass as expected (``xfail`` maps them to
    ``"xfailed"`` or ``"xpassed"``, a non-strict unexpected pass) follow the
    same rule, counted apart so that the summary does not report a known
    failure as news on every update. Tests that did not run (skipped, errored,
    deselected, not reached) keep theirs; a test in ``failed`` that recorded
    nothing (it failed first) is counted as failed. Only ``vanished`` tests, those a
    complete collection no longer holds, are removed.
    """
    xfail = xfail or {}
    merged = dict(old or {})
    result = Merged(merged)
    for nodeid, test in current.items():
        if nodeid in passed:
            merged[nodeid] = test
            result.written += 1
        elif nodeid in merged:
            if nodeid in xfail:
                result.kept_xfail[xfail[nodeid]] += 1
            else:
                result.kept_failed += 1
        elif nodeid in xfail:
            result.not_added_xfail[xfail[nodeid]] += 1
        else:
            result.not_added += 1
    for nodeid in sorted(set(merged)):
        if nodeid in current:
            continue
        if nodeid in vanished or nodeid in passed:
            del merged[nodeid]
            (result.removed if nodeid in vanished else result.emptied).append(nodeid)
        elif nodeid in xfail:
            result.kept_xfail[xfail[nodeid]] += 1
        elif nodeid in failed:
            result.kept_failed += 1
        else:
            result.kept_not_run += 1
    result.tests = dict(sorted(merged.items()))
    return result


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_history(metrics_dir: Path, tests: Tests, *, model: str, root: Path) -> Path:
    """Keep this run's metrics for trends and for comparing with the last run (never committed)."""
    folder = ignored_folder(metrics_dir / HISTORY, "run history, local")
    # Microseconds and the pid: two runs in one second, even from one process (pytest.main twice, a
    # pytester run), keep a file each; the names still sort by time.
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
    path = folder / f"{stamp}-{os.getpid()}.json"
    run = {"format": FORMAT, "time": time.strftime(TIME_FORMAT, time.gmtime(now)),
           "commit": git_commit(root), "model": model, "tests": tests}
    atomic_write_text(path, json.dumps(run, sort_keys=True) + "\n")  # a local cache: compact
    runs = sorted(folder.glob("*.json"))
    for old in runs[:-KEEP_RUNS]:
        old.unlink(missing_ok=True)
    return path


def last_history(metrics_dir: Path) -> tuple[Path, Tests] | None:
    """The most recent readable recorded run."""
    folder = metrics_dir / HISTORY
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            return path, validate(json.loads(path.read_text(encoding="utf-8")), path)
        except (OSError, ValueError, ConfigError) as exc:
            warnings.warn(LLMMetricsWarning(f"skipping unreadable run history {path}: {exc}"), stacklevel=2)
    return None
