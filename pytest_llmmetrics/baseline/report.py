"""End of session: gather every test's metrics, compare with the baseline, report and write files.

Registered on the controller only (never on xdist workers): workers send each
test's metrics on its report (``report.llm_metrics``), so a ``-n 2`` run sees
exactly what a serial run sees, and only this process writes files. Nothing
here may end the run with a traceback: a file that cannot be written is a
warning line, and the exit status stays the tests' own.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmmetrics import matrix
from pytest_llmmetrics.baseline import aggregate, html, render, store, trend
from pytest_llmmetrics.baseline.compare import (
    Row,
    Tolerances,
    compare,
    inconclusive_line,
    totals,
)
from pytest_llmmetrics.baseline.models import ModelRow, compare_models, not_compared
from pytest_llmmetrics.baseline.store import BASELINE, HISTORY, Tests
from pytest_llmmetrics.display import show_path
from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.files import atomic_write_text, check_regular
from pytest_llmmetrics.redact import env_secrets, scrub

REPORTS = {  # dest -> (how the user names it, an example path, how a report of ours begins)
    "llm_report_json": ("--llm-report-json / llm_report_json", "llm-report.json",
                        ('{"aggregates": ', '{"inconclusive": ')),
    "llm_report_html": ("--llm-report-html / llm_report_html", "llm-report.html", ("<!DOCTYPE html>",)),
}


def check_paths(metrics_dir: Path, reports: dict[str, Path], others: dict[str, Path] | None = None) -> None:
    """Paths known up front that can never be written: a usage error now, not a crash after the tests.

    ``reports``: this plugin's report paths by option dest; ``others``: what
    else this run writes (``--junitxml``, ``$GITHUB_STEP_SUMMARY``), which a
    report must not replace.
    """
    for folder in (metrics_dir, *metrics_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise pytest.UsageError(
                    f"llm_metrics_dir: {metrics_dir} cannot be a directory, {folder} is a file; "
                    "point llm_metrics_dir at a directory (default: .llmmetrics at the rootdir)"
                )
            break
    taken = {name: Path(os.path.realpath(path)) for name, path in (others or {}).items()}
    for dest, path in reports.items():
        option, example, _ = REPORTS[dest]
        _check_report_path(path, metrics_dir, dest)
        real = Path(os.path.realpath(path))
        for name, other in taken.items():
            if real == other:
                raise pytest.UsageError(
                    f"{option}: {path} is also where {name} writes; one would replace the other, so give each "
                    f"its own path, e.g. {example}"
                )
        taken[option.split(" ", 1)[0]] = real


def _check_report_path(path: Path, metrics_dir: Path, dest: str) -> None:
    option, example, signatures = REPORTS[dest]
    flag = option.split(" ", 1)[0]
    if path.is_dir():
        raise pytest.UsageError(f"{option}: {path} is a directory; give a file path, e.g. {flag}={example}")
    if path.exists() and not path.is_file():
        raise pytest.UsageError(
            f"{option}: {path} is not a regular file (a device, a pipe or a socket); give a file path, "
            f"e.g. {flag}={example}"
        )
    if _plugins_own(path, metrics_dir):
        raise pytest.UsageError(
            f"{option}: {path} is the plugin's own file (the baseline, the run history or the embedding cache in "
            f"llm_metrics_dir); write the report elsewhere, e.g. {example}"
        )
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise pytest.UsageError(f"{option}: cannot write {path}, {folder} is a file")
            break
    if path.is_file() and not _is_report(path, signatures):
        raise pytest.UsageError(
            f"{option}: {path} exists and is not a report written by pytest-llmmetrics; writing the report would "
            f"replace it. Delete it if it is an old report, or give another path, e.g. {flag}={example}"
        )


def _is_report(path: Path, signatures: tuple[str, ...]) -> bool:
    """An empty file, or one that begins as this plugin's reports do (the HTML one names the plugin)."""
    try:
        with open(path, "rb") as f:
            start = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return True  # unreadable: the write at the end says so, as for any report it cannot write
    if not start.strip():
        return True
    if not start.lstrip().startswith(signatures):
        return False
    return not signatures[0].startswith("<") or f'content="{html.GENERATOR}"' in start


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies in it, symlinks resolved."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real == base or base in real.parents


def _plugins_own(path: Path, metrics_dir: Path) -> bool:
    """``path`` is the baseline, or lies in the run history or the embedding cache: never a report's place."""
    return any(_inside(path, own) for own in (metrics_dir / BASELINE, metrics_dir / HISTORY, metrics_dir / "cache"))


class MetricsReport:
    """The ``llm metrics`` terminal section, baseline/history writes and CI outputs."""

    def __init__(self, config: pytest.Config, metrics_dir: Path, tolerance_spec: str | None, *,
                 update: bool, fail_on_regression: bool, json_path: str | None, models: list[str],
                 html_path: str | None = None) -> None:
        self.config = config
        self.metrics_dir = metrics_dir
        self.baseline_path = metrics_dir / BASELINE
        self.tolerance_spec = tolerance_spec
        if tolerance_spec:  # a bad spec is a usage error now, not at the end of the run
            self.tolerances()
        self.update = update
        self.fail_on_regression = fail_on_regression
        self.json_path = self._given_path(json_path, "llm_report_json")
        self.html_path = self._given_path(html_path, "llm_report_html")
        reports = {dest: path for dest, path in (("llm_report_json", self.json_path),
                                                 ("llm_report_html", self.html_path)) if path is not None}
        others = {}
        xml = getattr(config.option, "xmlpath", None)
        if xml:
            others["--junitxml"] = config.invocation_params.dir / os.path.expanduser(xml)
        if os.environ.get("GITHUB_STEP_SUMMARY"):
            others["$GITHUB_STEP_SUMMARY"] = Path(os.environ["GITHUB_STEP_SUMMARY"])
        check_paths(metrics_dir, reports, others)
        self.model = models[0]  # what the history names when no test's fingerprint does
        # The model matrix (two models or more): each test's model, and each model's totals, in the order named.
        self.models = list(models) if len(models) > 1 else []
        self.model_runs: dict[str, tuple[str, str]] = {}  # test id -> (model, test id without the model)
        self.model_totals = {spec: matrix.ModelTotals(spec) for spec in self.models}
        self.model_rows: list[ModelRow] = []
        self.model_gaps: dict[str, list[str]] = {}  # metrics a model's comparison has no row for
        self._model_failed: set[str] = set()
        self.tests: Tests = {}
        self.rows: list[Row] = []
        self.aggregates: list[aggregate.Aggregate] = []
        self.runs: list[trend.Run] = []  # the trends' runs, oldest first, this one last (read when shown)
        self.reference = ""
        self.notes: list[str] = []
        self.warnings: list[str] = []
        # What ran and how, so that accepting a run never drops what still exists.
        self.deselected: set[str] = set()
        self.collected: set[str] = set()
        self.collection_errors = 0
        self.failed: set[str] = set()
        self.passed: set[str] = set()
        self.xfail: dict[str, str] = {}  # xfail tests that xfailed or xpassed: not accepted, but counted apart
        # Strict, and before any test runs: a broken baseline stops the run, untouched.
        self.baseline: Tests | None = None
        if self.baseline_path.is_file():
            try:
                self.baseline = store.load_baseline(self.baseline_path)
            except ConfigError as exc:
                raise pytest.UsageError(str(exc)) from None

    def _given_path(self, value: str | None, dest: str) -> Path | None:
        """A report path: from the command line, relative to where pytest was started; from the ini file,
        relative to the rootdir (as ``llm_metrics_dir`` is), wherever pytest is started from."""
        if not value:
            return None
        path = Path(os.path.expanduser(value))
        if path.is_absolute():
            return path
        given = self.config.getoption(dest, None) is not None
        return (self.config.invocation_params.dir if given else self.config.rootpath) / path

    def tolerances(self) -> Tolerances:
        try:
            return Tolerances.parse(self.tolerance_spec)
        except ConfigError as exc:  # named as the user set it: the flag, or the ini key
            raise pytest.UsageError(str(exc).replace("--llm-tolerance:", "--llm-tolerance / llm_tolerance:", 1)) \
                from None

    # --- what the session collected and how each test ended ---------------------------

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected.update(self._id(item.nodeid) for item in items)

    def _id(self, nodeid: str) -> str:
        """A test's id as the baseline keys it: without xdist's ``@group`` under ``--dist loadgroup``."""
        return matrix.plain_nodeid(nodeid, self.config)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors += 1

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected.update(self._id(item.nodeid) for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.collected.update(map(self._id, ids))  # under xdist the workers collect; each sends the whole list

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = self._id(report.nodeid)
        if report.failed or (report.when == "call" and hasattr(report, "wasxfail")):
            self.failed.add(nodeid)  # an expected failure is still not a state to accept
            if not report.failed:  # xfailed, or a non-strict XPASS: counted apart (a strict XPASS failed)
                self.xfail[nodeid] = "xfailed" if report.skipped else "xpassed"
        elif report.when == "call" and report.passed:
            self.passed.add(nodeid)
        summary = getattr(report, "llm_metrics", None)
        if report.when == "call" and summary and summary.get("metrics"):
            self.tests[nodeid] = summary
        run = getattr(report, "llm_matrix", None)
        if run and run.get("model") in self.model_totals:
            self._count_model_run(nodeid, report, run)

    def _count_model_run(self, nodeid: str, report: pytest.TestReport, run: dict[str, Any]) -> None:
        totals = self.model_totals[run["model"]]
        if nodeid not in self.model_runs:
            self.model_runs[nodeid] = (run["model"], run["case"])
            if not report.skipped:
                totals.tests += 1
        if report.failed and nodeid not in self._model_failed:
            self._model_failed.add(nodeid)
            totals.failed += 1
        if run.get("usage"):
            totals.usage.merge(run["usage"])

    def _full_run(self, session: pytest.Session, exitstatus: int) -> bool:
        """Every test of the suite was collected and selected, and the run was not cut short.

        Only then may tests missing from the collection count as vanished.
        """
        opt = self.config.option
        chosen = self.config.args_source == pytest.Config.ArgsSource.ARGS
        interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR,
                                     pytest.ExitCode.USAGE_ERROR)
        return not (self.deselected or chosen or opt.keyword or opt.markexpr or interrupted
                    or self.collection_errors or not self.collected or session.shouldfail or session.shouldstop
                    or getattr(opt, "lf", False) or getattr(opt, "failedfirst", False)
                    or getattr(opt, "stepwise", False) or getattr(opt, "deselect", None)
                    or getattr(opt, "ignore", None) or getattr(opt, "ignore_glob", None))

    # --- the end of the run -------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        secrets = env_secrets()
        self.models = [scrub(spec, secrets) for spec in self.models]  # a spec may hold a secret by mistake
        for model_totals in self.model_totals.values():
            model_totals.model = scrub(model_totals.model, secrets)
        if not self.tests:
            # The suite recorded no metric: no section and no history; a report asked for is still written
            # (saying so), so that a CI job never uploads an older run's report as this one's.
            self._write_reports()
            return

        full = self._full_run(session, exitstatus)
        reference = self.baseline
        if reference is not None:
            self.reference = f"baseline {self._show_path(self.baseline_path)}"
        else:
            last = self._attempt(self.metrics_dir / store.HISTORY, lambda: store.last_history(self.metrics_dir))
            if last:
                self.reference = f"last recorded run {last[0].name} (no baseline yet)"
                reference = last[1]
        tests, collected, finished = self._redacted()
        vanished = matrix.vanished(reference or {}, collected, self.models) if full else set()
        tolerances = self.tolerances()
        self.rows = compare(reference, tests, tolerances, vanished=vanished, finished=finished)
        self.aggregates = aggregate.pooled(reference, tests, tolerances)
        if self.models:
            runs = {scrub(test, secrets): (scrub(spec, secrets), scrub(case, secrets))
                    for test, (spec, case) in self.model_runs.items()}
            self.model_rows = compare_models(tests, runs, self.models, tolerances)
            self.model_gaps = not_compared(tests, runs, self.models, self.model_rows)
        self.notes += tolerances.unknown_names(
            {name for group in (tests, reference or {}) for test in group.values() for name in test["metrics"]}
            | {m.get("kind", "") for group in (tests, reference or {}) for test in group.values()
               for m in test["metrics"].values()},
            {key for test in tests.values() for name, m in test["metrics"].items() if m.get("scale") == "binary"
             for key in (name, m.get("kind", ""))})
        if self._wants_trends():
            self.runs = self._load_runs(tests)  # before this run joins the history
        if self.html_path:
            self._write_reports(json=False)
        self._attempt(self.metrics_dir / store.HISTORY,
                      lambda: store.write_history(self.metrics_dir, tests, model=self._models(tests),
                                                  root=self.config.rootpath))
        if self.update:
            self._update_baseline(exitstatus, finished, vanished)
        if self.json_path:
            self._write_reports(html=False)
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            self._attempt(Path(summary_file), lambda: self._append_summary(Path(summary_file)))
        if self.fail_on_regression and self._regressions() and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write_reports(self, *, json: bool = True, html: bool = True) -> None:
        """The JSON and HTML reports asked for, each followed by a line saying where it went."""
        for path, wanted, write, what in ((self.html_path, html, self._write_html, "HTML"),
                                          (self.json_path, json, self._write_json, "JSON")):
            if path is not None and wanted and self._attempt(path, lambda: write(path)) is not False:  # noqa: B023
                self.notes.append(f"{what} report: {show_path(path, self.config.invocation_params.dir)}"
                                  + ("" if self.tests else " (no metrics recorded)"))

    def _wants_trends(self) -> bool:
        """Trends cost a read of the history and of git: only for ``-v`` (sparklines) and reports that show them."""
        return self.html_path is not None or (
            self.config.option.verbose > 0 and any(r.verdict not in ("unchanged", "new") for r in self.rows))

    def _load_runs(self, tests: Tests) -> list[trend.Run]:
        """The run history and the committed baselines, oldest first, then this run; warnings become lines."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs = trend.load_runs(self.metrics_dir, self.config.rootpath)
        self.warnings += [str(w.message) for w in caught]
        return [*runs, trend.Run.current(tests, store.git_commit(self.config.rootpath))]

    def trends(self) -> dict[tuple[str, str], str]:
        """Sparklines of the moved rows' metrics over the last runs (empty unless trends were read)."""
        if not self.runs:
            return {}
        moved = {(r.test, r.metric) for r in self.rows if r.verdict not in ("unchanged", "new")}
        found = trend.all_series(self.runs)
        return {key: trend.sparkline([p.mean for p in found[key]]) for key in moved
                if key in found and len(found[key]) > 1}

    def _regressions(self) -> int:
        """Regressed metrics and regressed pooled comparisons: what ``--llm-fail-on-regression`` fails on."""
        return totals(self.rows)["regressed"] + aggregate.totals(aggregate.distinct(self.aggregates))["regressed"]

    def _models(self, tests: Tests) -> str:
        """The model specs this run's tests used (from their fingerprints), else the configured default."""
        used = sorted({t["fingerprint"]["model"] for t in tests.values() if t.get("fingerprint", {}).get("model")})
        return ", ".join(used) or self.model

    def _redacted(self) -> tuple[Tests, set[str], set[str]]:
        """This run's metrics, collected and finished tests, with secrets in test ids and metric names redacted.

        Everything written or printed from here on (terminal, baseline,
        history, JSON, GitHub summary) starts from these.
        """
        secrets = env_secrets()
        def entry(m: dict[str, Any]) -> dict[str, Any]:  # the text fields; numbers hold no secret
            clean = {**m, "kind": scrub(m["kind"], secrets), "threshold": scrub(m.get("threshold"), secrets)}
            if m.get("group") is not None:
                clean["group"] = scrub(m["group"], secrets)
            return clean

        self.tests = {
            scrub(nodeid, secrets): {"fingerprint": scrub(test.get("fingerprint") or {}, secrets),
                                     "metrics": {scrub(name, secrets): entry(m) for name, m in test["metrics"].items()}}
            for nodeid, test in sorted(self.tests.items())
        }
        collected = {scrub(nodeid, secrets) for nodeid in self.collected}
        finished = {scrub(nodeid, secrets) for nodeid in self.passed - self.failed}
        return self.tests, collected, finished

    def _update_baseline(self, exitstatus: int, finished: set[str], vanished: set[str]) -> None:
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
            self.notes.append("baseline NOT updated: the run was interrupted")
            return
        secrets = env_secrets()
        xfail = {scrub(nodeid, secrets): how for nodeid, how in self.xfail.items()}
        failed = {scrub(nodeid, secrets) for nodeid in self.failed}
        merged = store.merge(self.baseline, self.tests, passed=finished, vanished=vanished, xfail=xfail,
                             failed=failed)
        if not merged.tests and self.baseline is None:
            self.notes.append("baseline NOT written: no test that records metrics passed, so there is nothing to "
                              "accept (the next run compares with this run's history)")
            return
        saved = self._attempt(self.baseline_path, lambda: store.save_baseline(self.baseline_path, merged.tests))
        if saved is not False:
            self.notes.append(merged.summary(self._show_path(self.baseline_path)))
        else:
            self.notes.append("baseline NOT updated (see the warning above)")

    def _attempt(self, path: Path, write: Callable[[], Any]) -> Any:
        """Run ``write``; an OS error becomes a one-line warning naming the file (and False is returned)."""
        try:
            return write()
        except OSError as exc:  # named by the path the user knows, not a temp file beside it
            self.warnings.append(f"could not write {self._show_path(path)}: {exc.strerror or type(exc).__name__}")
            return False

    def _show_path(self, path: Path) -> str:
        return show_path(path, self.config.rootpath)

    def _write_json(self, path: Path) -> None:
        atomic_write_text(path, render.json_report(self.reference, self.rows, self.warnings, self.aggregates,
                                                   self.model_rows, self._totals(), self.model_gaps))

    def _totals(self) -> list[matrix.ModelTotals]:
        """Each model's totals, in the order named (empty without the model matrix)."""
        return list(self.model_totals.values())

    def _write_html(self, path: Path) -> None:
        """The HTML report: the trend over the run history and the committed baselines, this run last."""
        runs = self.runs or [trend.Run.current(self.tests, store.git_commit(self.config.rootpath))]
        atomic_write_text(path, html.render(total=self.total_line(), rows=self.rows,
                                            aggregates=self.aggregates, tests=self.tests, runs=runs,
                                            generated=runs[-1].time, models=self.model_rows,
                                            model_totals=self._totals(), model_gaps=self.model_gaps))

    def _append_summary(self, path: Path) -> None:
        if _plugins_own(path, self.metrics_dir):  # never append Markdown to the baseline or the history
            raise OSError(errno.EINVAL, "it is the plugin's own file; point GITHUB_STEP_SUMMARY elsewhere", str(path))
        check_regular(path)
        with open(path, "a", encoding="utf-8") as f:
            f.write(self.markdown())

    def total_line(self) -> str:
        return render.total_line(len(self.tests), self.rows, self.reference)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        if not self.tests:  # no section; only what became of a report asked for
            for line in self.warnings:
                tr.write_line(f"warning: {line}", yellow=True)
            for note in self.notes:
                tr.write_line(note)
            return
        tr.write_sep("=", "llm metrics")
        verbose = self.config.option.verbose > 0
        for i, (line, verdict) in enumerate(render.table(self.rows, verbose=verbose,
                                                         trends=self.trends() if verbose else None)):
            tr.write_line(line, red=verdict == "regressed", yellow=verdict in ("unstable", "changed"),
                          green=verdict == "improved", bold=i == 0)
        regressed = sum(r.verdict == "regressed" for r in self.rows)
        tr.write_line(self.total_line(), red=bool(regressed), bold=True)
        inconclusive = inconclusive_line(self.rows)
        if inconclusive:
            tr.write_line(inconclusive)
        pooled = aggregate.shown(self.aggregates, verbose=verbose)
        if pooled:
            tr.write_line(render.pooled_title())
            for i, (line, verdict) in enumerate(render.pooled_table(pooled)):
                tr.write_line(line, red=verdict == "regressed", yellow=verdict in ("unstable", "changed"),
                              green=verdict == "improved", bold=i == 0)
        if self.models:
            for i, (line, verdict) in enumerate(render.models_block(self.models, self.model_rows, self._totals(),
                                                                          self.model_gaps)):
                tr.write_line(line, red=verdict == "worse", green=verdict == "better", yellow=verdict == "different",
                              bold=i == 0)
        pooled_regressed = aggregate.totals(aggregate.distinct(self.aggregates))["regressed"]
        if (regressed or pooled_regressed) and self.fail_on_regression:
            what = [f"{n} regressed {noun}" for n, noun in ((regressed, "metric(s)"),
                                                           (pooled_regressed, "pooled comparison(s)")) if n]
            tr.write_line(f"--llm-fail-on-regression: {' and '.join(what)} fail this run", red=True)
        for warning in self.warnings:
            tr.write_line(f"warning: {warning}", yellow=True)
        for note in self.notes:
            tr.write_line(note)

    def markdown(self) -> str:
        """The delta table for ``$GITHUB_STEP_SUMMARY``."""
        return render.markdown(self.total_line(), self.rows, aggregate.shown(self.aggregates, verbose=False),
                               self.models, self.model_rows, self._totals(), self.model_gaps)
