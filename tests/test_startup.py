"""Start-up discipline: a suite of deterministic checks imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "sentence_transformers", "llama_cpp", "openai")


def test_deterministic_suite_imports_no_heavy_module(bot):
    bot.makepyfile(
        test_a="""
import pytest
from pytest_llmmetrics import metrics

@pytest.mark.llm(model="py:bot:reply")
def test_it(llm, llm_metrics):
    llm_metrics.expect(llm("capital?"), metrics.contains("Paris"), metrics.no_pii(), metrics.is_json(),
                       metrics.no_refusal(), metrics.language("en"), metrics.no_markdown())
"""
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--capture=no"],
        cwd=bot.path, capture_output=True, text=True, timeout=300,
    )
    assert "1 failed" in proc.stdout  # is_json misses on prose: the checks really ran
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "pytest_llmmetrics.checks.check" in imported and "py3langid" in imported, proc.stderr[-3000:]
    loaded_heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert loaded_heavy == []
