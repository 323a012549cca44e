"""End-of-session cost of the metric report: 5,000 tests x 5 metrics, serial and ``-n 2``.

Times, inside the pytest controller, the report plugin's own hooks:
collecting each test's metrics from its report (``pytest_runtest_logreport``;
under xdist the reports arrive from the workers), and at the end comparing
with the baseline and writing history, baseline and JSON report
(``pytest_sessionfinish``) and printing the table (terminal summary).
Target: < 1 s.

Then the HTML report (``--llm-report-html``) for 500 tests x 5 metrics with 50
runs of synthetic history on disk: reading the trend (``trend.load_runs``),
building the series and rendering the page, its size (target <= 2 MB), and
the time headless Chromium takes to load, parse and lay it out (measured by
the page's own clock; target < 1 s).

    python benchmarks/report.py [--tests 5000] [--repeats 3] [--html-tests 500] [--html-runs 50] [--only html]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CONFTEST = '''
import json, os, time
import pytest

HOOKS = ("pytest_runtest_logreport", "pytest_sessionfinish", "pytest_terminal_summary")
TIMES = dict.fromkeys(HOOKS, 0.0)

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # Time the report plugin's own hook functions, nothing else (on the controller).
    plugin = config.pluginmanager.get_plugin("llmmetrics-report")
    if plugin is None:
        return
    for name in HOOKS:
        for impl in getattr(config.hook, name).get_hookimpls():
            if impl.plugin is plugin:
                def timed(*args, _fn=impl.function, _name=name):
                    start = time.perf_counter()
                    try:
                        return _fn(*args)
                    finally:
                        TIMES[_name] += time.perf_counter() - start
                impl.function = timed

def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        with open(os.environ["TIMES_FILE"], "w") as f:
            json.dump(TIMES, f)
'''

TESTS = '''
import os
import pytest

SHIFT = float(os.environ.get("SHIFT", "0"))

@pytest.mark.parametrize("i", range({n}))
def test_case(i, llm_metrics):
    llm_metrics.record("accuracy", 0.9 - SHIFT * (i % 7 == 0))
    llm_metrics.record("latency_s", 0.5 + i % 3 / 10, higher_is_better=False)
    llm_metrics.record("cost_usd", 0.001, higher_is_better=False)
    llm_metrics.record("similarity[snapshot]", 0.93)
    for k in range(5):
        llm_metrics.record("pass_rate", k < 4)
'''


def run(root: Path, times: Path, *args: str, shift: str = "0") -> dict[str, float]:
    env = {**__import__("os").environ, "TIMES_FILE": str(times), "SHIFT": shift}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return json.loads(times.read_text())


def synthetic_tests(n: int, run: int, *, moved: str) -> dict:
    """``n`` tests x 5 metrics as one run stores them: a noisy history; in the current run (``run`` < 0)
    ``moved`` is "some" (1 test in 7 regresses) or "all" (every metric moves, as after a model change)."""
    rng = random.Random(run)
    current = run < 0
    tests = {}
    for i in range(n):
        shift = 0.2 if moved == "all" or (moved == "some" and i % 7 == 0) else 0.0
        noise = 0.0 if current else rng.gauss(0, 0.01)
        k = 4 if current else rng.choice((3, 4, 4, 5, 5))
        common = {"group": f"tests/test_group{i % 5}.py", "passed": 1, "scale": "numeric", "std": 0.0,
                  "threshold": None, "n": 1}
        metrics = {
            "accuracy": {**common, "kind": "accuracy", "mean": round(0.9 - shift + noise, 6), "higher_is_better": True,
                         "track": "utility"},
            "latency_s": {**common, "kind": "latency_s", "mean": round(0.5 + rng.random() / 5, 6),
                          "higher_is_better": False, "track": "operations"},
            "cost_usd": {**common, "kind": "cost_usd", "mean": 0.001 + (0.001 if current and moved == "all" else 0),
                         "higher_is_better": False, "track": "operations"},
            "similarity[snapshot]": {**common, "kind": "similarity", "mean": round(0.93 - shift + noise / 2, 6),
                                     "higher_is_better": True, "track": "utility", "threshold": ">= 0.85"},
            "pass_rate": {**common, "kind": "pass_rate", "mean": k / 5, "n": 5, "passed": k, "scale": "binary",
                          "std": round((k * (5 - k) / 20) ** 0.5, 6), "higher_is_better": True, "track": "utility",
                          "threshold": ">= 60%"},
        }
        prompt = "3f2a9c" if run < 25 and not current else "77b1e0"  # a prompt change half-way
        tests[f"tests/test_group{i % 5}.py::test_case[{i}]"] = {
            "fingerprint": {"model": "local", "params": '{"temperature": 0.0}', "prompt": prompt}, "metrics": metrics}
    return tests


# Appended to a copy of the page: when the parser reaches it, everything before it is parsed and the page's own
# script has run; then it forces the first layout. Times from the page's own clock (navigation start = 0).
PROBE = ('<script>var t0 = performance.now(); document.body.offsetHeight; var t1 = performance.now();'
         'document.body.setAttribute("data-timing", t0.toFixed(0) + " " + (t1 - t0).toFixed(0));</script>')


def browser_ms(browser: str, page: Path, profile: Path) -> tuple[float, float]:
    """(ms to load, parse and run the page's script, ms for the first layout) in headless Chromium."""
    probe = page.with_suffix(".probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                          f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-timing="(\d+) (\d+)"', dom)
    if not found:
        raise SystemExit(f"Chromium did not run the probe on {page}")
    return float(found[1]), float(found[2])


def html_report(n_tests: int, n_runs: int, repeats: int) -> None:
    from pytest_llmmetrics.baseline import aggregate, html, store, trend
    from pytest_llmmetrics.baseline.compare import Tolerances, compare, totals
    from pytest_llmmetrics.baseline.render import total_line

    print(f"HTML report, {n_tests} tests x 5 metrics, {n_runs} runs of history (median of {repeats})")
    with tempfile.TemporaryDirectory() as tmp:
        metrics_dir = Path(tmp) / ".llmmetrics"
        (metrics_dir / store.HISTORY).mkdir(parents=True)
        for run in range(n_runs - 1):  # the report adds the current run as the last point
            data = {"format": 1, "time": f"2026-10-{1 + run // 24:02d}T{run % 24:02d}:00:00Z", "commit": None,
                    "model": "local", "tests": synthetic_tests(n_tests, run, moved="some")}
            (metrics_dir / store.HISTORY / f"{run:04d}.json").write_text(json.dumps(data, sort_keys=True))
        baseline = synthetic_tests(n_tests, -1, moved="none")
        for moved in ("some", "all"):
            current = synthetic_tests(n_tests, -1, moved=moved)
            rows = compare(baseline, current, Tolerances())
            aggregates = aggregate.pooled(baseline, current, Tolerances())
            figures: dict[str, list[float]] = {"load": [], "render": []}
            for _ in range(repeats):
                start = time.perf_counter()
                runs = trend.load_runs(metrics_dir, Path(tmp)) + [trend.Run.current(current)]
                loaded = time.perf_counter()
                page = html.render(total=total_line(len(current), rows, "baseline"), rows=rows,
                                   aggregates=aggregates, tests=current, runs=runs, generated=runs[-1].time)
                figures["load"].append(loaded - start)
                figures["render"].append(time.perf_counter() - loaded)
            path = Path(tmp) / f"report-{moved}.html"
            path.write_text(page, encoding="utf-8")
            load, render = (statistics.median(figures[k]) for k in ("load", "render"))
            count = totals(rows)
            what = f"{sum(v for k, v in count.items() if k != 'unchanged')} moved metrics"
            print(f"  {what:20} read history {load:.3f} s, series + page {render:.3f} s: total "
                  f"{load + render:.3f} s; {path.stat().st_size / 1e6:.2f} MB (target <= 2 MB)")
            browser = shutil.which("chromium") or shutil.which("chromium-browser")
            if browser:
                profile = Path(tmp) / "profile"
                timings = [browser_ms(browser, path, profile) for _ in range(max(repeats, 3))]
                parse, layout = (statistics.median(t[i] for t in timings) for i in (0, 1))
                print(f"  {'':20} Chromium: loaded, parsed and scripted in {parse:.0f} ms, first layout {layout:.0f} ms: "
                      f"{parse + layout:.0f} ms (target < 1000 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--html-tests", type=int, default=500)
    parser.add_argument("--html-runs", type=int, default=50)
    parser.add_argument("--only", choices=("session", "html"), help="run one of the two benchmarks")
    args = parser.parse_args()
    if args.only != "session":
        html_report(args.html_tests, args.html_runs, args.repeats)
    if args.only == "html":
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "conftest.py").write_text(textwrap.dedent(CONFTEST))
        (root / "test_many.py").write_text(TESTS.replace("{n}", str(args.tests)))
        (root / "pytest.ini").write_text("[pytest]\n")
        times = root / "times.json"
        run(root, times, "--llm-baseline-update")
        print(f"{args.tests} tests x 5 metrics; end-of-session time inside pytest (median of {args.repeats})")
        for label, extra in (("serial", ["-p", "no:xdist"]), ("-n 2", ["-n", "2"])):
            for what, flags in (("compare + report + history", []),
                                ("... + JSON report + baseline update",
                                 ["--llm-report-json", "r.json", "--llm-baseline-update"])):
                runs = [run(root, times, *extra, *flags, shift="0.2") for _ in range(args.repeats)]
                parts = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                total = statistics.median(sum(r.values()) for r in runs)
                print(f"  {label:7} {what:38} collect {parts['pytest_runtest_logreport']:.3f} s, "
                      f"session end {parts['pytest_sessionfinish']:.3f} s, table "
                      f"{parts['pytest_terminal_summary']:.3f} s: total {total:.3f} s (target < 1 s)")


if __name__ == "__main__":
    main()
