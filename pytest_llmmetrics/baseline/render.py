"""The delta report for people and tools: the terminal table, the total line, Markdown and JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from pytest_llmmetrics.baseline.aggregate import Aggregate, format_delta, format_interval, format_value
from pytest_llmmetrics.baseline.compare import ORDER, Row, inconclusive_line, totals
from pytest_llmmetrics.baseline.stats import POOLED_ALPHA
from pytest_llmmetrics.display import clip, columns, markdown_cell, printable

HEADER = ("test", "metric", "baseline", "current", "delta", "verdict", "detectable", "why")


def total_line(tests: int, rows: Sequence[Row], reference: str | None) -> str:
    """``5 tests, 12 metrics: 1 regressed, 11 unchanged against the baseline``."""
    counts = totals(rows)
    parts = ", ".join(f"{counts[v]} {v}" for v in ORDER if counts[v] or v in ("regressed", "unchanged"))
    against = f" against the {reference}" if reference else " (no baseline yet: all new)"
    return f"{tests} tests, {len(rows)} metrics: {parts}{against}"


def table(rows: Sequence[Row], *, verbose: bool, trends: Mapping[tuple[str, str], str] | None = None
          ) -> list[tuple[str, str]]:
    """The terminal table as (line, verdict) pairs, header first; unchanged rows only when ``verbose``.

    ``trends``: a sparkline per (test, metric) of moved rows (``-v``), shown in a last column.
    """
    shown = [r for r in rows if verbose or r.verdict != "unchanged"]
    if not shown:
        return []
    header = HEADER + ("trend",) if trends else HEADER
    cells = [header] + [(clip(printable(r.test)), clip(printable(r.metric)), r.baseline, r.current, r.delta,
                         r.verdict, r.detectable, r.why) + ((trends.get((r.test, r.metric), ""),) if trends else ())
                        for r in shown]
    return list(zip(columns(cells), (row[5] for row in cells)))


POOLED_HEADER = ("pooled", "metric", "baseline", "current", "delta", "interval", "tests", "verdict")


def pooled_title() -> str:
    return (f"pooled over tests (paired by test, tests as clusters; intervals: one-sided {1 - POOLED_ALPHA:.1%} "
            "bounds)")


def pooled_table(aggregates: Sequence[Aggregate]) -> list[tuple[str, str]]:
    """The pooled block as (line, verdict) pairs, header first: one line per scope and metric kind."""
    if not aggregates:
        return []
    cells = [POOLED_HEADER] + [(clip(printable(a.label)), clip(printable(a.metric)),
                                format_value(a.baseline, a.binary), format_value(a.current, a.binary),
                                format_delta(a.delta, a.binary), format_interval(a), _tests(a), a.verdict)
                               for a in aggregates]
    return list(zip(columns(cells), (row[7] for row in cells)))


def _tests(a: Aggregate) -> str:
    """The number of tests pooled, and on the suite row those left out (their sample count changed)."""
    return f"{a.tests} ({a.left_out} left out)" if a.left_out and a.scope == "suite" else str(a.tests)


def _label(a: Aggregate) -> str:
    """The scope for Markdown: a group or track name is user text, so it goes in code."""
    return "suite" if a.scope == "suite" else f"{a.scope} {markdown_cell(a.name, code=True)}"


def markdown(total: str, rows: Sequence[Row], aggregates: Sequence[Aggregate] = ()) -> str:
    """The delta table for ``$GITHUB_STEP_SUMMARY``: the pooled comparisons, the total line, then the rows that
    moved."""
    lines = ["## llm metrics", ""]
    if aggregates:
        lines += [f"**{pooled_title()}**", "", "| " + " | ".join(POOLED_HEADER) + " |",
                  "|" + "---|" * len(POOLED_HEADER)]
        lines += [f"| {_label(a)} | {markdown_cell(a.metric, code=True)} | "
                  f"{format_value(a.baseline, a.binary)} | {format_value(a.current, a.binary)} | "
                  f"{format_delta(a.delta, a.binary)} | {format_interval(a)} | {_tests(a)} | **{a.verdict}** |"
                  for a in aggregates]
        lines += [""]
    lines += [markdown_cell(total), ""]
    inconclusive = inconclusive_line(rows)
    if inconclusive:
        lines += [inconclusive, ""]
    changed = [r for r in rows if r.verdict != "unchanged"]
    if changed:
        lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += [f"| {markdown_cell(r.test, code=True)} | {markdown_cell(r.metric, code=True)} | {r.baseline} | "
                  f"{r.current} | {r.delta} | **{r.verdict}** | {r.detectable} | {r.why} |" for r in changed]
    return "\n".join(lines) + "\n\n"


def json_report(reference: str | None, rows: Sequence[Row], warnings: Sequence[str],
                aggregates: Sequence[Aggregate] = ()) -> str:
    """``--llm-report-json``: compact (the C encoder, fast), keys sorted."""
    data = {"reference": reference, "totals": totals(rows), "inconclusive": sum(r.inconclusive for r in rows),
            "warnings": list(warnings), "rows": [r.as_dict() for r in rows],
            "aggregates": [a.as_dict() for a in aggregates]}
    return json.dumps(data, sort_keys=True) + "\n"
