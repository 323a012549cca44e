"""End-of-session cost of the metric report: 5,000 tests x 5 metrics, serial and ``-n 2``.

Times, inside the pytest controller, the report plugin's own hooks:
collecting each test's metrics from its report (``pytest_runtest_logreport``;
under xdist the reports arrive from the workers), and at the end comparing
with the baseline and writing history, baseline and JSON report
(``pytest_sessionfinish``) and printing the table (terminal summary).
Target: < 1 s.

    python benchmarks/report.py [--tests 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
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
