"""The examples suite: live on the embedded model, replayed offline, and what prompt edits do to it.

Each test runs a copy of ``examples/`` (its own rootdir, with the committed
snapshots, recordings and baseline), so the working tree is never touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_local = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("syrupy") is None,
    reason="needs pytest-llmmetrics[local,semantic]",
)


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("__pycache__", "history", "cache"))
    return copy


def pytest_in(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=path,
                          capture_output=True, text=True, timeout=600)


def recorded_texts(path: Path) -> dict[str, list[str]]:
    out = {}
    for file in sorted((path / "__recordings__").glob("*.llm.json")):
        for entry in json.loads(file.read_text())["recordings"]:
            out[entry["key"]] = [json.dumps(r["text"]) for r in entry["replies"]]
    return out


def test_committed_files_are_in_place():
    assert sorted(p.name for p in (EXAMPLES / "__recordings__").iterdir()) == [
        "test_complaints.llm.json", "test_orders.llm.json", "test_policies.llm.json", "test_safety.llm.json",
        "test_voice.llm.json"]
    assert len(list((EXAMPLES / "__snapshots__").rglob("*.llm.txt"))) == 4
    assert (EXAMPLES / ".llmmetrics" / "baseline.json").is_file()


# What llama.cpp's portable x86 build (CMAKE_ARGS="-DGGML_NATIVE=OFF", as .ci/run and tox install it) uses.
PORTABLE = {"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2", "LLAMAFILE", "OPENMP", "REPACK"}


def cpu_tuned_features() -> set[str]:
    """Instruction sets this llama.cpp build uses beyond the portable build's (empty: it computes the same)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    return {m.group(1) for m in re.finditer(r"(\w+) = 1", info)} - PORTABLE


@needs_local
def test_live_run_reproduces_the_recordings(examples):
    """Temperature 0 and seeded sampling: a live run gives the committed replies, on any machine.

    The replies were recorded with llama.cpp's portable build; a build tuned to another CPU
    (AVX-512, ...) adds floating-point differences that can turn a greedy choice.
    """
    committed = recorded_texts(examples)
    proc = pytest_in(examples, "--llm-record-mode=all")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "12 passed" in proc.stdout and "llm metrics" in proc.stdout
    tuned = cpu_tuned_features()
    if tuned and recorded_texts(examples) != committed:
        pytest.skip(f"llama-cpp-python here is built for this CPU ({', '.join(sorted(tuned))}); the recordings "
                    "come from the portable build: pip cache remove llama_cpp_python, then reinstall with "
                    "CMAKE_ARGS=-DGGML_NATIVE=OFF")
    assert recorded_texts(examples) == committed


@needs_local
def test_slight_system_prompt_edit_still_matches_the_snapshot(examples):
    shop = examples / "teashop.py"
    shop.write_text(shop.read_text().replace(
        "Returns: within 30 days of delivery, full refund.",
        "Returns are accepted within 30 days of delivery for a full refund."))
    proc = pytest_in(examples, "-k", "policies", "-v")
    assert proc.returncode == 0, proc.stdout[-4000:]
    # The reply's wording changed, its meaning did not: similar, not identical.
    line = next(ln for ln in proc.stdout.splitlines() if "test_return_window" in ln and "similarity[snapshot]" in ln)
    similarity = float(line.split()[3])
    assert 0.8 <= similarity < 1.0, line
    assert "prompt changed" in line

    # Accepting the change (README "Workflows"): one live run re-records replies and baseline, then CI replays.
    before = recorded_texts(examples)
    proc = pytest_in(examples, "-k", "policies", "--snapshot-update", "--llm-record-mode=all")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "test_policies.llm.json: 2 replies recorded, 2 requests no longer sent removed" in proc.stdout
    after = recorded_texts(examples)
    assert len(after) == len(before) and after != before  # the old prompt's replies replaced, not added to
    proc = pytest_in(examples, "-k", "policies", "--llm-record-mode=none", "--llm-fail-on-regression")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "2 passed" in proc.stdout and "0 regressed" in proc.stdout


@needs_local
def test_substantial_system_prompt_edit_fails_clearly(examples):
    shop = examples / "teashop.py"
    shop.write_text(shop.read_text().replace("Answer with one sentence, using only these facts.",
                                             "Answer in one short sentence in French, using only these facts."))
    proc = pytest_in(examples, "-k", "policies")
    assert proc.returncode == 1
    out = proc.stdout
    assert "2 failed" in out
    assert re.search(r"similarity -?0\.[0-4]\d\d < threshold 0\.680 \(embedding model sentence-transformers/all-MiniLM-L6-v2\)",
                     out), out[-4000:]
    assert "- contains[30 days] = false, needs must be true" in out
    assert "prompt changed" in out and "regressed" in out


def test_the_github_workflow_replays_the_suite_without_a_model(examples, tmp_path):
    """The CI way, as the workflow runs it: recorded replies, all cores, regressions fail the run; llama.cpp
    unavailable, and the same results as the committed baseline."""
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((EXAMPLES / ".github" / "workflows" / "llm-regression.yml").read_text())
    steps = {step.get("name"): step for step in workflow["jobs"]["llm-tests"]["steps"]}
    command = steps["LLM tests on recorded replies"]["run"].split()
    assert command[:4] == ["python", "-m", "pytest", "examples"]
    assert {"-n", "auto", "--llm-record-mode=none", "--llm-fail-on-regression"} <= set(command)
    (examples / "conftest.py").write_text(
        "import sys\nsys.modules['llama_cpp'] = None  # no model in CI\n" + (examples / "conftest.py").read_text())
    proc = subprocess.run([sys.executable, *command[1:], "-p", "no:cacheprovider"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "GITHUB_STEP_SUMMARY":
                                                                            str(tmp_path / "summary.md")})
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "12 passed" in proc.stdout
    report = json.loads((tmp_path / "llm-report.json").read_text())
    assert report["totals"]["regressed"] == 0 and report["totals"]["unchanged"] == len(report["rows"]) > 30
    assert 'name="llm:contains[30 days]" value="1.0"' in (tmp_path / "junit.xml").read_text()
    summary = (tmp_path / "summary.md").read_text()
    assert re.search(r"12 tests, \d+ metrics: 0 regressed, \d+ unchanged against the baseline", summary), summary


def test_readme_quotes_the_examples_as_they_are():
    readme = (EXAMPLES.parent / "README.md").read_text()
    workflows = readme[readme.index("## Workflows"):readme.index("## Configuration")]
    quoted = re.search(r"```python\n(def test_shipping_time.*?)```", workflows, re.DOTALL)[1]
    assert quoted in (EXAMPLES / "test_policies.py").read_text()
    prose = " ".join(workflows.split())
    for fact in ("Returns: within 30 days of delivery, full refund.",
                 "Answer with one sentence, using only these facts."):
        assert fact in prose and fact in (EXAMPLES / "teashop.py").read_text()


@needs_local
def test_the_same_suite_against_an_openai_compatible_server(examples, llama_server):
    """What conftest.py describes: two flags point the suite at a server; the tests still hold."""
    proc = pytest_in(examples, "--llm-model", "openai:smollm2", "--llm-base-url", llama_server.base_url,
                     "--llm-report-json=report.json")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "12 passed" in proc.stdout
    rows = json.loads((examples / "report.json").read_text())["rows"]
    assert rows and all(r["verdict"] == "unchanged" or r["why"] == "model changed" for r in rows)  # says why
