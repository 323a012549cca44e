"""Start-up cost of the plugin: ``pytest --collect-only -q`` on 500 trivial tests, plugin on vs off.

Runs alternate, and so does which side of a pair goes first (on/off, off/on,
...), so drift on the machine and any first-in-pair penalty hit both sides
alike. Prints each side's median wall time and the median of the per-pair
ratios. Target: ratio <= 1.05.

    python benchmarks/startup.py [--runs 21] [--tests 500]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_suite(root: Path, n_tests: int) -> None:
    per_module = 50
    for m in range(n_tests // per_module):
        body = "\n\n".join(f"def test_{i}():\n    assert {i} == {i}" for i in range(per_module))
        (root / f"test_mod{m:02d}.py").write_text(body + "\n")
    (root / "pytest.ini").write_text("[pytest]\n")


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--tests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_suite(root, args.tests)
        base = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        on_cmd, off_cmd = base, base + ["-p", "no:llmmetrics"]
        timed(on_cmd, root), timed(off_cmd, root)  # warm the file cache and .pyc files
        on, off = [], []
        for i in range(args.runs):
            if i % 2:
                off.append(timed(off_cmd, root))
                on.append(timed(on_cmd, root))
            else:
                on.append(timed(on_cmd, root))
                off.append(timed(off_cmd, root))
    ratios = [a / b for a, b in zip(on, off)]
    print(f"tests: {args.tests}, alternating runs per side: {args.runs}")
    print(f"plugin on : median {statistics.median(on) * 1000:.1f} ms")
    print(f"plugin off: median {statistics.median(off) * 1000:.1f} ms  (-p no:llmmetrics)")
    print(f"median ratio on/off: {statistics.median(ratios):.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
