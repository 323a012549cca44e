"""``--llm-report-html``: the delta report as one self-contained HTML file that opens offline.

`render` takes plain data (the rows, the pooled aggregates, the runs of the trend with this run last, this run's
tests) and returns the page: an overview of the pooled comparisons with a trend chart per metric kind for the suite
(and its tracks), the moved metrics in a table that sorts and filters, with a trend chart each, and a drill-down
per test (its metrics, fingerprint, thresholds, a sparkline per metric). Charts are server-side SVG (`charts`);
the one inline script only sorts and filters tables. Every user string is escaped; nothing is fetched.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmmetrics.baseline import aggregate, charts, stats
from pytest_llmmetrics.baseline import render as terminal
from pytest_llmmetrics.baseline.aggregate import Aggregate
from pytest_llmmetrics.baseline.charts import text
from pytest_llmmetrics.baseline.compare import ORDER, Row, fingerprint_changes, inconclusive_line, scale
from pytest_llmmetrics.baseline.store import Tests
from pytest_llmmetrics.baseline.trend import ACCEPTED, BASELINE, Point, Run, all_series
from pytest_llmmetrics.tracks import TRACKS, default_track

if TYPE_CHECKING:
    from pytest_llmmetrics.baseline.models import ModelRow
    from pytest_llmmetrics.matrix import ModelTotals

GENERATOR = "pytest-llmmetrics"  # how a later run knows the file at the path is a report it may replace
MAX_CHARTS = 40  # moved metrics drawn in full; the others keep the sparkline in their test's drill-down
_DIRECTION = {True: "higher", False: "lower", None: ""}
_T90: dict[int, float] = {}

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d1d1f;margin:0 auto;max-width:1240px;padding:1em 1.5em}
h1{font-size:1.5em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
code{font:12px ui-monospace,monospace;overflow-wrap:anywhere}
.meta{color:#555}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
th button{font:inherit;font-weight:600;border:0;background:none;padding:0;cursor:pointer}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
td[data-v],.m td:nth-child(n+3):nth-child(-n+6){text-align:right;font-variant-numeric:tabular-nums}
#moved-table td:nth-child(-n+2),.m td:first-child{font:12px ui-monospace,monospace;overflow-wrap:anywhere}
.regressed{color:#b3261e;font-weight:600}.improved{color:#1e7b34}.unstable,.changed{color:#9a6700}
.new,.gone{color:#555}
.tools{margin:.5em 0}.tools input{width:22em}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:.8em}
figure{margin:0;border:1px solid #e4e4e4;border-radius:4px;padding:.4em}
figcaption{font-size:12px;color:#333}figcaption ul{margin:.2em 0;padding-left:1.2em}
svg.chart{width:100%;height:auto;display:block}
.chart text{font:11px system-ui,sans-serif;fill:#555}.grid{stroke:#eee}
.band{fill:#4a7fd4;fill-opacity:.18}.line{fill:none;stroke:#2b5cad;stroke-width:1.5}
.chart circle{fill:#2b5cad}.chart .cur{fill:#d4622a}.acc{fill:#fff;stroke:#1e7b34;stroke-width:1.5}
.note{stroke:#9a6700;stroke-dasharray:3 3}
svg.spark{width:100px;height:20px;vertical-align:middle}
.spark path{fill:none;stroke:#2b5cad;stroke-width:1.2;vector-effect:non-scaling-stroke}
section{content-visibility:auto;contain-intrinsic-size:auto 900px}
details{border-bottom:1px solid #eee;padding:.2em 0}summary{cursor:pointer}
.fp{margin:.3em 0 .3em 1.2em;color:#333}
"""

SCRIPT = """
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null) return cell.textContent.trim().toLowerCase();
    return v === "" ? NaN : Number(v);
  }
  function compare(x, y) {
    return typeof x === "number" && typeof y === "number" ? x - y : x < y ? -1 : x > y ? 1 : 0;
  }
  function sortBy(table, th, col) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      var missing = (x !== x) - (y !== y);  // NaN, no value: last either way
      if (missing) return missing;
      return ascending ? compare(x, y) : compare(y, x);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, th, col); });
    });
  });
  function applyFilter(id) {
    var box = document.getElementById(id);
    var input = document.querySelector('input[data-for="' + id + '"]');
    var select = document.querySelector('select[data-for="' + id + '"]');
    var query = input ? input.value.trim().toLowerCase() : "";
    var verdict = select ? select.value : "";
    var shown = 0;
    box.querySelectorAll("[data-verdicts]").forEach(function (el) {
      var label = el.tagName === "DETAILS" ? el.querySelector("summary") : el;
      var ok = label.textContent.toLowerCase().indexOf(query) >= 0 &&
        (!verdict || (" " + el.getAttribute("data-verdicts") + " ").indexOf(" " + verdict + " ") >= 0);
      el.hidden = !ok;
      if (ok) shown += 1;
    });
    var out = document.querySelector('output[data-for="' + id + '"]');
    if (out) out.textContent = shown + " shown";
  }
  document.querySelectorAll("[data-for]").forEach(function (control) {
    if (control.tagName === "OUTPUT") return;
    var id = control.getAttribute("data-for");
    control.addEventListener("input", function () { applyFilter(id); });
    applyFilter(id);
  });
  document.body.setAttribute("data-charts", String(document.querySelectorAll("svg.chart").length));
  document.body.setAttribute("data-sparklines", String(document.querySelectorAll("svg.spark").length));
  document.body.setAttribute("data-ready", "1");
})();
"""


def render(*, total: str, rows: Sequence[Row], aggregates: Sequence[Aggregate], tests: Tests,
           runs: Sequence[Run], generated: str = "", series: dict[tuple[str, str], list[Point]] | None = None,
           models: Sequence[ModelRow] = (), model_totals: Sequence[ModelTotals] = (),
           model_gaps: Mapping[str, Sequence[str]] | None = None) -> str:
    """The whole page. ``total``: the report's total line (it names the reference); ``runs``: oldest first, this
    run last; ``series``: `trend.all_series` of them (computed when not given); ``generated``: a time to show, or
    nothing (a page that depends on its input only)."""
    if series is None:
        series = all_series(runs)
    title = "llm metrics report"
    head = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="generator" content="{GENERATOR}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            f"<style>{STYLE}</style></head><body>",
            f"<header><h1>{title}</h1><p><strong>{text(total)}</strong></p>"]
    inconclusive = inconclusive_line(rows)
    if inconclusive:
        head.append(f"<p>{text(inconclusive)}</p>")
    head.append(f'<p class="meta">{_span(runs)}{" · generated " + text(generated) if generated else ""}</p>')
    head.append('<p class="meta">Bands: 90% interval of the mean (of a test\'s samples; of the tests, pooled). '
                "Dashed line: the fingerprint changed (model, prompt, sampling parameters, embedding model). "
                "Hollow square: a committed baseline. Orange dot: this run.</p>")
    head.append('<nav><a href="#overview">Overview</a>'
                + ('<a href="#models">Models</a>' if model_totals else '')
                + '<a href="#moved">Moved metrics</a><a href="#tests">Tests</a></nav></header>')
    verdicts: dict[tuple[str, str], str] = {(r.test, r.metric): r.verdict for r in rows}
    anchors = {test: f"t{i}" for i, test in enumerate(tests)}
    body = [_overview(aggregates, runs, tests), _models(models, model_totals, model_gaps),
            _moved(rows, series, anchors), _tests(tests, series, verdicts, anchors)]
    return "".join(head) + "".join(body) + f"<script>{SCRIPT}</script></body></html>\n"


def _span(runs: Sequence[Run]) -> str:
    if not runs:
        return "no runs recorded"
    recorded = sum(r.source != BASELINE for r in runs)
    committed = len(runs) - recorded
    what = f"{recorded} {'run' if recorded == 1 else 'runs'}"
    if committed:
        what += f" and {committed} committed {'baseline' if committed == 1 else 'baselines'}"
    return f"Trends over {what}, {text(runs[0].time[:10])} to {text(runs[-1].time[:10])}"


def _cells(values: Iterable[tuple[str, str | None]]) -> str:
    """Table cells: (shown text, already escaped; sort key or None). A key makes the column sort by number."""
    return "".join(f'<td data-v="{key}">{shown}' if key is not None else f"<td>{shown}"
                   for shown, key in values)


def _key(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


# --- the overview: pooled comparisons and their trends --------------------------------------------------


def _overview(aggregates: Sequence[Aggregate], runs: Sequence[Run], tests: Tests) -> str:
    out = ['<section id="overview"><h2>Overview</h2>']
    shown = aggregate.distinct(aggregates)
    wide = [a for a in shown if a.scope != "group"]
    if wide:
        out.append("<p>Each metric kind pooled over the suite and each track, paired by test with tests as clusters "
                   "(intervals: one-sided bounds of the change; a track that pools the same tests as the suite is "
                   "not repeated).</p>")
        out.append(_pooled_table("pooled", wide))
    else:
        out.append("<p>No pooled comparison: that needs two tests or more with a metric kind in both this run and "
                   "the reference.</p>")
    figures = []
    for label, kind, higher, points in pooled_series(runs, tests):
        direction = f" ({_DIRECTION[higher]} is better)" if higher is not None else ""
        figures.append(_figure(charts.trend_chart(points, f"{label} · {kind}{direction}", unit="tests"),
                               f"{text(label)} · <code>{text(kind)}</code>{direction}: the mean over tests per run",
                               points))
    if figures:
        out.append(f'<h3>Trends</h3><div class="charts">{"".join(figures)}</div>')
    groups = [a for a in shown if a.scope == "group"]
    if groups:
        out.append(f'<h3>Groups</h3><div class="tools"><input type="search" data-for="groups" '
                   f'placeholder="filter by group or metric" aria-label="filter groups by name or metric"> '
                   f'{_verdict_select("groups", groups)} <output data-for="groups"></output></div>'
                   f'<div id="groups">{_pooled_table("groups-table", groups)}</div>')
    out.append("</section>")
    return "".join(out)


def _models(rows: Sequence[ModelRow], model_totals: Sequence[ModelTotals],
            gaps: Mapping[str, Sequence[str]] | None = None) -> str:
    """The model matrix: each model against the first named, per metric kind and track, and each model's totals."""
    if not model_totals:
        return ""
    names = [t.model for t in model_totals]
    out = [f'<section id="models"><h2>Models</h2><p>{text(terminal.models_title(names))}. Pooled over the tests '
           "both models ran, as the overview pools a run against its reference.</p>"]
    if rows:
        out.append('<table class="sortable" id="models-table"><thead><tr><th>model<th>metric<th>track<th>tests'
                   f"<th>{text(names[0])}<th>value<th>delta<th>interval<th>verdict</thead><tbody>")
        for m in rows:
            style = {"better": "improved", "worse": "regressed", "different": "changed"}.get(m.verdict, "")
            out.append("<tr>" + _cells([
                (f"<code>{text(m.model)}</code>", None), (f"<code>{text(m.metric)}</code>", None),
                (text(m.track), None), (str(m.tests), str(m.tests)),
                (aggregate.format_value(m.reference_value, m.binary), _key(m.reference_value)),
                (aggregate.format_value(m.value, m.binary), _key(m.value)),
                (aggregate.format_delta(m.delta, m.binary), _key(m.delta)),
                (terminal.model_interval(m), _key(m.low))]) + f'<td class="{style}">{text(m.verdict)}')
        out.append("</tbody></table>")
    else:
        out.append(f"<p>{text(terminal.NO_MODEL_ROWS)}.</p>")
    out += [f"<p>{text(line)}.</p>" for line in terminal.gaps_lines(names, gaps)]
    out.append('<table class="sortable" id="model-totals"><thead><tr>'
               + "".join(f"<th>{text(h)}" for h in terminal.TOTALS_HEADER) + "</thead><tbody>")
    for t in model_totals:
        cells = terminal.totals_cells(t)
        out.append("<tr>" + _cells([(f"<code>{text(t.model)}</code>", None)]
                                   + [(text(c), None) for c in cells[1:]]))
    out.append("</tbody></table></section>")
    return "".join(out)


def _pooled_table(ident: str, aggregates: Sequence[Aggregate]) -> str:
    out = [f'<table class="sortable" id="{ident}"><thead><tr><th>scope<th>metric<th>baseline<th>current<th>delta'
           "<th>interval<th>tests<th>verdict</thead><tbody>"]
    for a in aggregates:
        out.append(f'<tr data-verdicts="{a.verdict}">' + _cells([
            (text(a.label), None), (f"<code>{text(a.metric)}</code>", None),
            (aggregate.format_value(a.baseline, a.binary), _key(a.baseline)),
            (aggregate.format_value(a.current, a.binary), _key(a.current)),
            (aggregate.format_delta(a.delta, a.binary), _key(a.delta)),
            (aggregate.format_interval(a), _key(a.low)), (str(a.tests), str(a.tests))])
            + f'<td class="{a.verdict}">{a.verdict}')
    out.append("</tbody></table>")
    return "".join(out)


def _verdict_select(ident: str, items: Sequence[Row | Aggregate]) -> str:
    """A verdict filter offering the verdicts present, in the report's order (regressions first)."""
    present = sorted({item.verdict for item in items}, key=ORDER.index)
    options = "".join(f'<option value="{v}">{v}' for v in present)
    return f'<select data-for="{ident}" aria-label="only this verdict"><option value="">every verdict{options}</select>'


def _figure(svg: str, caption: str, points: Sequence[Point], anchor: str = "") -> str:
    notes = [f"<li>{text(p.time[:10])}{' ' + text(p.commit) if p.commit else ''}: {text(', '.join(p.notes))}"
             for p in points if any(n != ACCEPTED for n in p.notes)]
    listed = f"<ul>{''.join(notes[-5:])}</ul>" if notes else ""
    more = f" ({len(notes) - 5} earlier changes in the points' tooltips)" if len(notes) > 5 else ""
    ident = f' id="{anchor}"' if anchor else ""
    return f"<figure{ident}>{svg}<figcaption>{caption}{more}{listed}</figcaption></figure>"


def pooled_series(runs: Sequence[Run], current: Tests) -> list[tuple[str, str, bool | None, list[Point]]]:
    """Per metric (named as `aggregate.pooled` names them) and direction of ``current``: the mean over tests in
    each run, for the suite and each track that pools other tests than the suite, with a 90 % interval over tests
    and notes where fingerprints changed.

    As in the pooled comparison, a test counts once: the mean of its metrics of that name. Only this run's tests
    count, so that tests joining or leaving the suite do not move the line, and a metric needs two of them.
    Returns (label, metric, direction, points), suite first.
    """
    members: dict[tuple[str, bool | None], set[str]] = defaultdict(set)
    tracks: dict[tuple[str, bool | None], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    binary: dict[tuple[str, bool | None], bool] = defaultdict(lambda: True)
    for test, record in current.items():
        for name, entry in record["metrics"].items():
            key = (name.split("[", 1)[0], entry.get("higher_is_better"))  # as aggregate.pooled keys them
            members[key].add(test)
            tracks[key][entry.get("track") or default_track(entry.get("kind", name))].add(test)
            binary[key] = binary[key] and scale(entry) == "binary"
    keys = sorted((k for k in members if len(members[k]) >= 2), key=lambda k: (k[0], str(k[1])))
    # Scopes per metric: the suite (None), then each track with two tests or more that are not the suite's tests
    # (as in the pooled table, a track that pools the same tests as the suite would repeat its chart).
    scopes: dict[tuple[str, bool | None], list[tuple[str, bool | None, str | None]]] = {
        k: [(*k, track) for track in [None, *(t for t in TRACKS if len(tracks[k].get(t, ())) >= 2
                                             and tracks[k][t] != members[k])]]
        for k in keys}
    points: dict[tuple[str, bool | None, str | None], list[Point]] = defaultdict(list)
    last: dict[str, Any] = {}
    for run in runs:
        # (kind, direction, track or None for the suite) -> test -> (sum, count) of its values there
        values: dict[tuple[str, bool | None, str | None], dict[str, tuple[float, int]]] = {}
        changed: dict[str, tuple[str, ...]] = {}
        for test, record in run.tests.items():
            if test not in current:
                continue
            fingerprint = record.get("fingerprint") or {}
            before = last.get(test)
            if before is not None and before != fingerprint:
                changed[test] = fingerprint_changes(before, fingerprint)
            last[test] = fingerprint
            for name, entry in record["metrics"].items():
                kind = entry.get("kind", name)
                higher = entry.get("higher_is_better")
                scoped = scopes.get((name.split("[", 1)[0], higher))
                if scoped is None:
                    continue
                mean = entry["mean"]
                for scope in scoped if len(scoped) == 1 else \
                        scoped[:1] + [s for s in scoped[1:] if s[2] == (entry.get("track") or default_track(kind))]:
                    by_test = values.get(scope)
                    if by_test is None:
                        by_test = values[scope] = {}
                    before_sum = by_test.get(test)
                    by_test[test] = (mean, 1) if before_sum is None else (before_sum[0] + mean, before_sum[1] + 1)
        for scope, by_test in values.items():
            notes = Counter(note for test in changed if test in by_test for note in changed[test])
            points[scope].append(_pooled_point(run, [total / count for total, count in by_test.values()], notes,
                                               binary[scope[0], scope[1]]))
    return [("suite" if scope[2] is None else f"track {scope[2]}", scope[0], scope[1], points[scope])
            for key in keys for scope in scopes[key] if points.get(scope)]


def _pooled_point(run: Run, per_test: list[float], changed: Counter[str], binary: bool) -> Point:
    """One run of a pooled series: the mean over tests, its 90 % t interval (tests as clusters), the notes."""
    k = len(per_test)
    mean = math.fsum(per_test) / k
    low = high = None
    if k > 1:
        t = _T90.get(k)
        if t is None:
            t = _T90[k] = stats.t_quantile(0.95, k - 1)
        half = t * math.sqrt(math.fsum([(v - mean) ** 2 for v in per_test]) / (k - 1) / k)
        low, high = mean - half, mean + half
    notes = tuple(f"{note} ({n} {'test' if n == 1 else 'tests'})" for note, n in sorted(changed.items()))
    if run.source == BASELINE:
        notes += (ACCEPTED,)
    return Point(run.time, run.source, run.commit, mean, k, low, high, notes, binary)


# --- moved metrics ------------------------------------------------------------------------------------------


def _moved(rows: Sequence[Row], series: dict[tuple[str, str], list[Point]], anchors: dict[str, str]) -> str:
    moved = [r for r in rows if r.verdict != "unchanged"]
    out = [f'<section id="moved"><h2>Moved metrics ({len(moved)})</h2>']
    if not moved:
        out.append("<p>No metric moved against the reference.</p></section>")
        return "".join(out)
    out.append(f'<div class="tools"><input type="search" data-for="moved" placeholder="filter by test or metric" '
               f'aria-label="filter moved metrics by test or metric"> {_verdict_select("moved", moved)} '
               f'<output data-for="moved"></output></div>')
    out.append('<table class="sortable" id="moved-table"><thead><tr><th>test<th>metric<th>baseline<th>current'
               "<th>delta<th>verdict<th>detectable<th>why<th>trend</thead><tbody>")
    figures: list[str] = []
    for i, row in enumerate(moved):
        points = series.get((row.test, row.metric), [])
        chart = ""
        if points and len(figures) < MAX_CHARTS:
            chart = f'<a href="#m{i}">chart</a>'
            summary = f"<code>{text(row.test)}</code> · <code>{text(row.metric)}</code>: " \
                      f'<span class="{row.verdict}">{row.verdict}</span> {text(row.baseline)} → {text(row.current)}' \
                      + (f" ({text(row.why)})" if row.why else "")
            figures.append(_figure(charts.trend_chart(points, f"{row.test} · {row.metric}"), summary, points,
                                   f"m{i}"))
        test = text(row.test)
        if row.test in anchors:
            test = f'<a href="#{anchors[row.test]}">{test}</a>'
        base, cur = row.values.get("baseline"), row.values.get("current")
        delta = cur["mean"] - base["mean"] if base and cur else None
        out.append(f'<tr data-verdicts="{row.verdict}">' + _cells([
            (test, None), (text(row.metric), None),
            (text(row.baseline), _key(base["mean"] if base else None)),
            (text(row.current), _key(cur["mean"] if cur else None)), (text(row.delta), _key(delta))])
            + f'<td class="{row.verdict}">{row.verdict}<td>{text(row.detectable)}<td>{text(row.why)}<td>{chart}')
    out.append("</tbody></table>")
    if figures:
        more = len([r for r in moved if series.get((r.test, r.metric))]) - len(figures)
        note = f"<p>{more} more moved metrics have their sparkline in their test's drill-down.</p>" if more > 0 else ""
        out.append(f'<h3>Trends of the moved metrics</h3>{note}<div class="charts">{"".join(figures)}</div>')
    out.append("</section>")
    return "".join(out)


# --- per test ---------------------------------------------------------------------------------------------------


def _tests(tests: Tests, series: dict[tuple[str, str], list[Point]], verdicts: dict[tuple[str, str], str],
           anchors: dict[str, str]) -> str:
    out = [f'<section id="tests"><h2>Tests ({len(tests)})</h2>',
           '<div class="tools"><input type="search" data-for="tests" placeholder="filter by test id" '
           'aria-label="filter tests by id"> <select data-for="tests" aria-label="only tests with this verdict">'
           '<option value="">every test<option value="regressed">with a regression<option value="moved">with a '
           'moved metric</select> <output data-for="tests"></output></div><div id="tests-list">']
    for test, record in tests.items():
        metrics = record["metrics"]
        counts = Counter(verdicts.get((test, name), "") for name in metrics)
        moved = sorted((v for v in counts if v and v != "unchanged"), key=lambda v: -counts[v])
        tags = " ".join(moved + (["moved"] if moved else []))
        moved_text = "".join(f' · <span class="{v}">{counts[v]} {v}</span>' for v in moved)
        out.append(f'<details data-verdicts="{tags}"><summary><code>{text(test)}</code> · '
                   f"{len(metrics)} {'metric' if len(metrics) == 1 else 'metrics'}{moved_text}</summary>")
        # The group is the test's (one for all its metrics): said once, with the fingerprint.
        groups = sorted({str(m["group"]) for m in metrics.values() if m.get("group")})
        about = [("group", ", ".join(groups))] if groups else []
        about += sorted((str(k), str(v)) for k, v in (record.get("fingerprint") or {}).items())
        if about:
            out.append('<p class="fp">' + " · ".join(f"{text(k)} <code>{text(v)}</code>" for k, v in about) + "</p>")
        # The anchor is inside: following a link to it opens the details (the browser expands a closed one).
        out.append(f'<table class="m" id="{anchors[test]}"><thead><tr><th>metric<th>kind<th>mean<th>n<th>passed'
                   "<th>std<th>scale<th>threshold<th>track<th>better<th>trend<th>verdict</thead><tbody>")
        for name, m in sorted(metrics.items()):
            points = series.get((test, name), [])
            binary = scale(m) == "binary"
            spark = charts.sparkline([p.mean for p in points], f"{name}: {_trend_words(points, binary)}") \
                if len(points) > 1 else ""
            verdict = verdicts.get((test, name), "")
            out.append(f"<tr><td>{text(name)}<td>{text(str(m.get('kind', name)))}"
                       f'<td>{m["mean"]:.4g}<td>{m["n"]}<td>{_opt(m.get("passed"))}'
                       f'<td>{_opt(m.get("std"))}<td>{text(str(m.get("scale") or ""))}'
                       f"<td>{text(str(m.get('threshold') or ''))}<td>{text(str(m.get('track') or ''))}"
                       f"<td>{_DIRECTION[m.get('higher_is_better')]}"
                       f"<td>{spark}" + (f'<td class="{verdict}">{verdict}' if verdict != "unchanged" else "<td>"))
        out.append("</tbody></table></details>")
    out.append("</div></section>")
    return "".join(out)


def _opt(value: Any) -> str:
    return "" if value is None else f"{value:.4g}"


def _trend_words(points: Sequence[Point], binary: bool) -> str:
    values = [p.mean for p in points]
    return (f"{len(values)} points, {charts.value_label(min(values), binary)} to "
            f"{charts.value_label(max(values), binary)}, last {charts.value_label(values[-1], binary)}")
