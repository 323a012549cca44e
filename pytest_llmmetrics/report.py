"""End of session: gather every test's metrics, compare with the baseline, report and write files.

Registered on the controller only (never on xdist workers): workers send each
test's metrics on its report (``report.llm_metrics``), so a ``-n 2`` run sees
exactly what a serial run sees, and only this process writes files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ConfigError
from .store import BASELINE  # stdlib only: cheap at start-up

if TYPE_CHECKING:
    from .delta import Row, Tolerances
    from .store import Tests


class MetricsReport:
    """The ``llm metrics`` terminal section, baseline/history writes and CI outputs."""

    def __init__(self, config: pytest.Config, metrics_dir: Path, tolerance_spec: str | None, *,
                 update: bool, fail_on_regression: bool, json_path: str | None, model: str) -> None:
        self.config = config
        self.metrics_dir = metrics_dir
        self.baseline_path = metrics_dir / BASELINE
        self.tolerance_spec = tolerance_spec
        if tolerance_spec:  # a bad spec is a usage error now, not at the end of the run
            self.tolerances()
        self.update = update
        self.fail_on_regression = fail_on_regression
        self.json_path = json_path
        self.model = model
        self.tests: Tests = {}
        self.deselected = False
        self.rows: list[Row] = []
        self.reference = ""
        self.notes: list[str] = []
        # Strict, and before any test runs: a broken baseline stops the run, untouched.
        self.baseline: Tests | None = None
        if self.baseline_path.is_file():
            from . import store

            try:
                self.baseline = store.load_baseline(self.baseline_path)
            except ConfigError as exc:
                raise pytest.UsageError(str(exc)) from None

    def tolerances(self) -> Tolerances:
        from .delta import Tolerances

        try:
            return Tolerances.parse(self.tolerance_spec)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected = True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        summary = getattr(report, "llm_metrics", None)
        if report.when == "call" and summary and summary.get("metrics"):
            self.tests[report.nodeid] = summary

    def _full_run(self, session: pytest.Session) -> bool:
        """Every test of the suite was selected: only then may entries of vanished tests be removed."""
        opt = self.config.option
        chosen = self.config.args_source == pytest.Config.ArgsSource.ARGS
        return not (self.deselected or chosen or opt.keyword or opt.markexpr or session.shouldfail
                    or session.shouldstop or getattr(opt, "lf", False) or getattr(opt, "failedfirst", False))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.tests:
            return  # the suite recorded no metric: no report, no files
        from . import store
        from .delta import compare, totals

        full = self._full_run(session)
        reference = self.baseline
        if reference is not None:
            self.reference = f"baseline {self._show_path(self.baseline_path)}"
        else:
            last = store.last_history(self.metrics_dir)
            if last is not None:
                self.reference = f"last recorded run {last[0].name} (no baseline yet)"
                reference = last[1]
        tests = dict(sorted(self.tests.items()))
        self.rows = compare(reference, tests, self.tolerances(), full_run=full and reference is not None)
        interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR,
                                     pytest.ExitCode.USAGE_ERROR)
        store.write_history(self.metrics_dir, tests, model=self.model, root=self.config.rootpath)
        if self.update and not interrupted:
            merged, removed = store.merge(self.baseline, tests, remove_missing=full)
            store.save_baseline(self.baseline_path, merged)
            self.notes.append(f"baseline updated: {len(tests)} tests written to {self._show_path(self.baseline_path)}"
                              + (f", {len(removed)} vanished tests removed" if removed else ""))
        elif self.update:
            self.notes.append("baseline NOT updated: the run was interrupted")
        if self.json_path:
            self._write_json(Path(self.json_path))
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            with open(summary_file, "a", encoding="utf-8") as f:
                f.write(self.markdown())
        if self.fail_on_regression and totals(self.rows)["regressed"] and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _show_path(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.rootpath))
        except ValueError:
            return str(path)

    def _write_json(self, path: Path) -> None:
        from .delta import totals
        from .files import atomic_write_text

        if not path.is_absolute():
            path = self.config.invocation_params.dir / path
        data = {"reference": self.reference, "totals": totals(self.rows), "rows": [r.as_dict() for r in self.rows]}
        atomic_write_text(path, json.dumps(data, sort_keys=True) + "\n")  # compact: C encoder, fast

    def total_line(self) -> str:
        from .delta import ORDER, totals

        counts = totals(self.rows)
        parts = ", ".join(f"{counts[v]} {v}" for v in ORDER if counts[v] or v in ("regressed", "unchanged"))
        against = f" against the {self.reference}" if self.reference else " (no baseline yet: all new)"
        return f"{len(self.tests)} tests, {len(self.rows)} metrics: {parts}{against}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tests:
            return
        tr = terminalreporter
        tr.write_sep("=", "llm metrics")
        verbose = self.config.option.verbose > 0
        shown = [r for r in self.rows if verbose or r.verdict != "unchanged"]
        if shown:
            header = ("test", "metric", "baseline", "current", "delta", "verdict", "detectable", "why")
            table = [header] + [(r.test, r.metric, r.baseline, r.current, r.delta, r.verdict, r.detectable, r.why)
                                for r in shown]
            widths = [max(len(row[i]) for row in table) for i in range(len(header))]
            for i, row in enumerate(table):
                line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                verdict = row[5]
                tr.write_line(line, red=verdict == "regressed", yellow=verdict == "unstable",
                              green=verdict == "improved", bold=i == 0)
        regressed = sum(r.verdict == "regressed" for r in self.rows)
        tr.write_line(self.total_line(), red=bool(regressed), bold=True)
        if regressed and self.fail_on_regression:
            tr.write_line(f"--llm-fail-on-regression: {regressed} regressed metric(s) fail this run", red=True)
        for note in self.notes:
            tr.write_line(note)

    def markdown(self) -> str:
        """The delta table for ``$GITHUB_STEP_SUMMARY``."""
        lines = ["## llm metrics", "", self.total_line(), ""]
        changed = [r for r in self.rows if r.verdict != "unchanged"]
        if changed:
            lines += ["| test | metric | baseline | current | delta | verdict | why |", "|---|---|---|---|---|---|---|"]
            lines += [f"| `{r.test}` | `{r.metric}` | {r.baseline} | {r.current} | {r.delta} | **{r.verdict}** | {r.why} |"
                      for r in changed]
        return "\n".join(lines) + "\n\n"
