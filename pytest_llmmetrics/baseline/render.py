"""The delta report for people and tools: the terminal table, the total line, Markdown and JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pytest_llmmetrics.baseline.aggregate import Aggregate, format_delta, format_interval, format_value
from pytest_llmmetrics.baseline.compare import ORDER, Row, inconclusive_line, totals
from pytest_llmmetrics.baseline.stats import POOLED_ALPHA
from pytest_llmmetrics.display import clip, columns, markdown_cell, printable

if TYPE_CHECKING:
    from pytest_llmmetrics.baseline.models import ModelRow
    from pytest_llmmetrics.matrix import ModelTotals

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


def markdown(total: str, rows: Sequence[Row], aggregates: Sequence[Aggregate] = (), models: Sequence[str] = (),
             model_rows: Sequence[ModelRow] = (), model_totals: Sequence[ModelTotals] = (),
             model_gaps: Mapping[str, Sequence[str]] | None = None) -> str:
    """The delta table for ``$GITHUB_STEP_SUMMARY``: the pooled comparisons, the total line, then the rows that
    moved; with the model matrix, the model comparison last."""
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
    if models:
        lines += ["", f"**{markdown_cell(models_title(models))}**", ""]
        if model_rows:
            lines += ["| " + " | ".join(MODELS_HEADER) + " |", "|" + "---|" * len(MODELS_HEADER)]
            for m in model_rows:
                cells = _model_cells(m)
                lines.append("| " + " | ".join([markdown_cell(m.model, code=True), markdown_cell(m.metric, code=True),
                                                *cells[2:8], f"**{m.verdict}**"]) + " |")
        else:
            lines.append(NO_MODEL_ROWS)
        lines += ["", *(f"{markdown_cell(line)}  " for line in gaps_lines(models, model_gaps))]
        lines += ["", "| " + " | ".join(TOTALS_HEADER) + " |", "|" + "---|" * len(TOTALS_HEADER)]
        for t in model_totals:
            cells = totals_cells(t)
            lines.append("| " + " | ".join([markdown_cell(t.model, code=True), *cells[1:]]) + " |")
    return "\n".join(lines) + "\n\n"


def json_report(reference: str | None, rows: Sequence[Row], warnings: Sequence[str],
                aggregates: Sequence[Aggregate] = (), models: Sequence[ModelRow] = (),
                model_totals: Sequence[ModelTotals] = (), model_gaps: Mapping[str, Sequence[str]] | None = None
                ) -> str:
    """``--llm-report-json``: compact (the C encoder, fast), keys sorted."""
    data = {"reference": reference, "totals": totals(rows), "inconclusive": sum(r.inconclusive for r in rows),
            "warnings": list(warnings), "rows": [r.as_dict() for r in rows],
            "aggregates": [a.as_dict() for a in aggregates], "models": [m.as_dict() for m in models],
            "model_totals": [t.as_dict() for t in model_totals],
            "models_not_compared": {model: list(names) for model, names in (model_gaps or {}).items()}}
    return json.dumps(data, sort_keys=True) + "\n"


# --- the model matrix -------------------------------------------------------------------------------------

MODELS_HEADER = ("model", "metric", "track", "tests", "reference", "value", "delta", "interval", "verdict")
TOTALS_HEADER = ("model", "tests", "failed", "calls", "latency", "prompt tokens", "completion tokens", "cost")
NO_MODEL_ROWS = ("no metric to compare yet: a comparison needs two tests or more that recorded the metric "
                 "under both models")


def gaps_lines(models: Sequence[str], gaps: Mapping[str, Sequence[str]] | None) -> list[str]:
    """A line per model with metrics that got no comparison row (`models.not_compared`)."""
    return [f"not compared with {printable(models[0])}: {printable(model)}: {', '.join(map(printable, names))} "
            "(fewer than two tests recorded them under both models)" for model, names in (gaps or {}).items()]


def models_title(models: Sequence[str]) -> str:
    return (f"model comparison: each model against {models[0]} (the first named), paired by test; intervals: "
            f"one-sided {1 - POOLED_ALPHA:.1%} bounds")


def _model_cells(m: ModelRow) -> tuple[str, ...]:
    return (clip(printable(m.model)), clip(printable(m.metric)), m.track, str(m.tests),
            format_value(m.reference_value, m.binary), format_value(m.value, m.binary),
            format_delta(m.delta, m.binary), model_interval(m), m.verdict)


def model_interval(m: ModelRow) -> str:
    return f"[{m.low * 100:+.1f}, {m.high * 100:+.1f}]" if m.binary else f"[{m.low:+.3g}, {m.high:+.3g}]"


def _some(total: float | int, known: int, calls: int, unit: str = "") -> str:
    """A total over the replies that reported it: ``n/a`` if none did, the share if only some did."""
    if not known:
        return "n/a"
    if isinstance(total, float):  # seconds: three significant digits below 100 s (0.00123 s, 12.3 s), then whole
        text = (f"{total:,.0f}" if total >= 100 else f"{total:.3g}") + unit
    else:
        text = f"{total:,}{unit}"
    return text if known == calls else f"{text} ({known} of {calls} calls)"


def _cost(t: ModelTotals) -> str:
    u = t.usage
    if not u.priced:
        return "n/a"
    text = f"${u.cost_usd:.6f}".rstrip("0").rstrip(".")
    return text if u.priced == u.calls else f"{text} ({u.priced} of {u.calls} calls)"


def totals_cells(t: ModelTotals) -> tuple[str, ...]:
    u = t.usage
    return (clip(printable(t.model)), str(t.tests), str(t.failed), str(u.calls),
            _some(float(u.latency_s), u.timed, u.calls, " s"), _some(int(u.prompt_tokens), u.counted, u.calls),
            _some(int(u.completion_tokens), u.counted, u.calls), _cost(t))


def models_block(models: Sequence[str], rows: Sequence[ModelRow], model_totals: Sequence[ModelTotals],
                 gaps: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, str]]:
    """The terminal's model comparison as (line, verdict) pairs: a title, the comparison, each model's totals."""
    lines: list[tuple[str, str]] = [(models_title(models), "")]
    if rows:
        cells = [MODELS_HEADER] + [_model_cells(m) for m in rows]
        lines += list(zip(columns(cells), (row[8] for row in cells)))
    else:
        lines.append((NO_MODEL_ROWS, ""))
    lines += [(line, "") for line in gaps_lines(models, gaps)]
    cells = [TOTALS_HEADER] + [totals_cells(t) for t in model_totals]
    lines += [(line, "") for line in columns(cells)]
    return lines
