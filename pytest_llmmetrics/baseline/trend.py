"""Metric trends over time: each metric's points from the local run history and the committed baselines.

`load_runs` reads the run history and the versions of ``baseline.json`` committed
in git (so a fresh CI checkout still has the accepted states), `all_series` turns
them into per-metric `Point` lists in one pass (intervals of sampled means, notes
where a fingerprint changed or a baseline was accepted), and `sparkline` draws them.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pytest_llmmetrics.baseline import stats, store
from pytest_llmmetrics.baseline.compare import fingerprint_changes, scale
from pytest_llmmetrics.errors import ConfigError, LLMMetricsWarning

RUN = "run"
BASELINE = "baseline"
ACCEPTED = "baseline accepted"
SHORT_SHA = 10
BLOCKS = "▁▂▃▄▅▆▇█"
GIT_TIMEOUT_S = 10
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")  # store.TIME_FORMAT: sorts as text
_ACCEPTED_NOTE = (ACCEPTED,)
_Z90 = 1.6448536269514722  # stats.z_value(0.05), the normal's 95th percentile: a 90 % two-sided interval
_Z2 = _Z90 * _Z90
_T90: dict[int, float] = {}  # Student's t, 95th percentile, by n


@dataclass(frozen=True)
class Run:
    """One point in time: a run from the history (``source="run"``) or a committed baseline version."""

    time: str  # UTC, store.TIME_FORMAT: "2026-11-23T18:00:00Z"
    source: str  # RUN or BASELINE
    commit: str | None  # short sha where known
    tests: store.Tests

    @classmethod
    def current(cls, tests: store.Tests, commit: str | None = None) -> Run:
        """This run, to append to `load_runs`'s list: ``load_runs(...) + [Run.current(tests, sha)]``."""
        return cls(time.strftime(store.TIME_FORMAT, time.gmtime()), RUN, _short(commit), tests)


class Point(NamedTuple):
    """A metric's value in one run, with a 90 % interval of the mean when it was sampled (n > 1).

    ``notes``: what happened at this point, in this order: "model changed",
    "prompt changed", "sampling parameters changed", "embedding model changed"
    (the test's fingerprint against the series' previous point), then
    "baseline accepted" for a committed baseline version.

    A named tuple rather than a frozen dataclass: the HTML report builds tens of
    thousands of points, and a frozen dataclass's ``__init__`` is ~8x slower.
    """

    time: str
    source: str
    commit: str | None
    mean: float
    n: int
    low: float | None  # None when n == 1, or a numeric entry has no std
    high: float | None
    notes: tuple[str, ...] = ()
    binary: bool = False  # a pass rate (show as a percentage), not a mean of values


def load_runs(metrics_dir: Path, root: Path, *, max_runs: int = 50, max_commits: int = 30) -> list[Run]:
    """The last ``max_runs`` history runs and the baseline versions of the last ``max_commits`` commits, oldest first.

    Never raises: a missing history folder, no git, no repository or an
    untracked baseline just contribute nothing. A committed version identical
    in content to the one before it (a commit that only reformatted the file)
    adds no run. At equal times a history run comes before a baseline.
    """
    runs = _history(metrics_dir, max_runs) + _committed(metrics_dir / store.BASELINE, root, max_commits)
    runs.sort(key=lambda run: (run.time, run.source != RUN))
    return runs


def _history(metrics_dir: Path, max_runs: int) -> list[Run]:
    folder = metrics_dir / store.HISTORY
    runs: list[Run] = []
    skipped: list[str] = []
    for path in sorted(folder.glob("*.json"), reverse=True):  # the names sort by time; no folder: no files
        if len(runs) >= max_runs:
            break
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tests = store.validate(data, path)
            if not isinstance(data.get("time"), str) or not _TIME.match(data["time"]):
                raise ValueError(f"'time' is {data.get('time')!r}, expected like '2026-11-23T18:00:00Z'")
        except (OSError, ValueError, RecursionError, ConfigError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        commit = data.get("commit")
        runs.append(Run(data["time"], RUN, _short(commit if isinstance(commit, str) else None), tests))
    if skipped:
        # One warning per call, however many files: the trend is drawn for every report.
        files = "file" if len(skipped) == 1 else "files"
        warnings.warn(LLMMetricsWarning(
            f"skipped {len(skipped)} unreadable run history {files} in {folder} (first: {skipped[0]}); "
            "delete them to silence this"), stacklevel=3)
    runs.reverse()
    return runs


def _committed(path: Path, root: Path, max_commits: int) -> list[Run]:
    """The baseline's versions in git, oldest first, each parsed and validated; nothing when anything fails."""
    if max_commits < 1:
        return []
    top = _git(["rev-parse", "--show-toplevel"], root)
    if not top:
        return []
    try:
        relative = path.resolve().relative_to(Path(os.fsdecode(top.rstrip(b"\n"))).resolve()).as_posix()
    except (OSError, ValueError, RuntimeError):  # outside the repository; a symlink loop
        return []
    if "\n" in relative:  # cat-file --batch reads one object name a line
        return []
    log = _git(["log", f"-n{max_commits}", "--format=%H %ct", "--", relative], root)
    commits = [line.split() for line in (log or b"").decode("ascii", "replace").splitlines()]
    commits = [c for c in commits if len(c) == 2 and c[1].isdigit()]
    if not commits:
        return []
    request = b"".join(f"{sha}:".encode() + os.fsencode(relative) + b"\n" for sha, _ in commits)
    blobs = _cat_file(_git(["cat-file", "--batch"], root, request) or b"", len(commits))
    runs: list[Run] = []
    for (sha, seconds), blob in zip(reversed(commits), reversed(blobs)):
        if blob is None:  # the file was deleted in that commit
            continue
        try:
            tests = store.validate(json.loads(blob), path)
        except (ValueError, RecursionError, ConfigError):
            continue  # an old commit cannot be fixed: leave it out silently
        if runs and runs[-1].tests == tests:
            continue
        runs.append(Run(time.strftime(store.TIME_FORMAT, time.gmtime(int(seconds))), BASELINE, _short(sha), tests))
    return runs


def _git(args: list[str], cwd: Path, stdin: bytes | None = None) -> bytes | None:
    """A git command's output, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", "-c", "core.quotepath=off", "--literal-pathspecs", *args], cwd=cwd,
                              input=stdin, capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _cat_file(out: bytes, count: int) -> list[bytes | None]:
    """The ``count`` answers of ``git cat-file --batch``: a blob's content, or None (missing, not a blob)."""
    blobs: list[bytes | None] = []
    position = 0
    while len(blobs) < count:
        end = out.find(b"\n", position)
        if end < 0:
            break
        header = out[position:end].split(b" ")
        position = end + 1
        if len(header) == 3 and header[2].isdigit():  # not "<name> missing" (a commit that deleted the file)
            size = int(header[2])  # "<oid> <type> <size>", then the content and a newline
            blobs.append(out[position:position + size] if header[1] == b"blob" else None)
            position += size + 1
        else:
            blobs.append(None)
    return blobs + [None] * (count - len(blobs))


def _short(commit: str | None) -> str | None:
    return commit[:SHORT_SHA] if commit else None


class _Track:
    """What the next point of one metric is compared with: the test's last fingerprint, the last accepted entry."""

    __slots__ = ("points", "fingerprint", "accepted")

    def __init__(self, fingerprint: dict[str, Any]) -> None:
        self.points: list[Point] = []
        self.fingerprint = fingerprint
        self.accepted: tuple[dict[str, Any], dict[str, Any]] | None = None


def all_series(runs: Sequence[Run]) -> dict[tuple[str, str], list[Point]]:
    """Every ``(test, metric)``'s points over ``runs`` (oldest first), in one pass; keys sorted.

    A run without the metric has no point for it (a gap). A baseline version
    whose entry and fingerprint for the metric equal those of the previous
    baseline point adds no point: only the commits that changed it do.
    """
    # The HTML report's hot loop (500 tests x 3 metrics x 50 runs): no key tuple allocated per point, and
    # Point._make, ~2x faster than Point(...).
    tracks: dict[str, dict[str, _Track]] = {}
    make = Point._make
    for run in runs:
        accepted = run.source == BASELINE
        for test, record in run.tests.items():
            fingerprint: dict[str, Any] = record.get("fingerprint") or {}
            by_metric = tracks.get(test)
            if by_metric is None:
                by_metric = tracks[test] = {}
            for metric, entry in record["metrics"].items():
                track = by_metric.get(metric)
                if track is None:
                    track = by_metric[metric] = _Track(fingerprint)
                notes = () if track.fingerprint == fingerprint else fingerprint_changes(track.fingerprint, fingerprint)
                if accepted:
                    # A commit that changed other tests left this one's accepted entry as it was: no new point.
                    if track.accepted is not None and track.accepted == (fingerprint, entry):
                        continue
                    track.accepted = (fingerprint, entry)
                    notes += _ACCEPTED_NOTE
                track.fingerprint = fingerprint
                n: int = entry["n"]
                mean = float(entry["mean"])
                kind = entry.get("scale")
                binary = kind == "binary" if kind is not None else scale(entry) == "binary"
                low, high = _interval(mean, n, entry.get("std"), binary) if n > 1 else (None, None)
                track.points.append(make((run.time, run.source, run.commit, mean, n, low, high, notes, binary)))
    return {(test, metric): tracks[test][metric].points for test in sorted(tracks) for metric in sorted(tracks[test])
            if tracks[test][metric].points}


def series(runs: Sequence[Run], test: str, metric: str) -> list[Point]:
    """The metric's points over the runs that have it, oldest first (see `all_series`)."""
    narrowed = [
        Run(run.time, run.source, run.commit,
            {test: {"fingerprint": record.get("fingerprint"), "metrics": {metric: record["metrics"][metric]}}})
        for run in runs
        for record in [run.tests.get(test)]
        if record is not None and metric in record["metrics"]
    ]
    return all_series(narrowed).get((test, metric), [])


def _interval(mean: float, n: int, std: float | None, binary: bool) -> tuple[float | None, float | None]:
    """A two-sided 90 % interval of the mean: Wilson's for a pass rate, Student's t for a mean of values.

    Written for speed (no min/max calls, the constants precomputed): the report computes tens of thousands.
    """
    if binary:
        z2n = _Z2 / n
        denominator = 1.0 + z2n
        centre = (mean + z2n / 2) / denominator
        half = _Z90 * math.sqrt((mean * (1.0 - mean) + z2n / 4) / n) / denominator
        low, high = centre - half, centre + half
        return (low if low > 0.0 else 0.0), (high if high < 1.0 else 1.0)  # rounding can step past 0 or 1
    if std is None:  # a sampled mean stored without its spread: no honest interval
        return None, None
    t = _T90.get(n)
    if t is None:
        t = _T90[n] = stats.t_quantile(0.95, n - 1)  # ~1 ms by bisection: once per sample size
    half = t * std / math.sqrt(n)
    return mean - half, mean + half


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """The last ``width`` values as ``▁▂▃▄▅▆▇█``, scaled between their minimum and maximum.

    A flat series is all ``▄``; no values give ""; a value that is not finite
    is a space (and does not stretch the scale).
    """
    if width < 1:
        return ""
    shown = list(values)[-width:]
    finite = [v for v in shown if math.isfinite(v)]
    if not finite:
        return " " * len(shown)
    low, high = min(finite), max(finite)
    top = len(BLOCKS) - 1
    if high == low:
        return "".join(BLOCKS[top // 2] if math.isfinite(v) else " " for v in shown)
    shrink = 0.25 if math.isinf(high - low) else 1.0  # values near the float limits: keep the span finite
    span = high * shrink - low * shrink
    return "".join(BLOCKS[round((v * shrink - low * shrink) / span * top)] if math.isfinite(v) else " "
                   for v in shown)
