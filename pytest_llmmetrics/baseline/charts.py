"""Server-side SVG charts for the HTML report: trend charts with interval bands and annotations, and sparklines.

Plain strings, no library and no script: a chart is testable by parsing it, has a ``<title>`` and a ``<desc>``
for screen readers, and every point's ``<title>`` is its tooltip. Coordinates are rounded to a tenth of a pixel
and sparklines are relative paths, so 2,500 of them stay small (see the size figures in benchmarks/report.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from pytest_llmmetrics.baseline.trend import ACCEPTED, BASELINE, Point
from pytest_llmmetrics.display import printable

WIDTH, HEIGHT = 480, 170
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 10, 26  # the plot area's margins: y labels left, dates below
SPARK_STEP, SPARK_UNITS = 2, 40  # a sparkline's units per point, and its height in units (shown 20 px high)


def num(value: float) -> str:
    """``value`` to a tenth, as short as SVG allows: ``12``, ``.5``, ``-.5``."""
    text = f"{value:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    if text.startswith("0."):
        return text[1:]
    if text.startswith("-0."):
        return "-" + text[2:]
    return "0" if text == "-0" else text


def text(value: str) -> str:
    """User text (test ids, metric and group names) safe in an element or an attribute, control characters shown."""
    return escape(printable(value), quote=True)


def value_label(value: float, binary: bool) -> str:
    """A value as people read it: a pass rate in %, anything else to four significant digits."""
    return f"{value:.0%}" if binary else f"{value:.4g}"


def sparkline(values: Sequence[float], label: str) -> str:
    """A polyline of ``values`` (oldest first) scaled between their minimum and maximum; ``label`` is its title.

    One path of relative moves in half-pixel units (``l2-3 2 1h4``, a flat stretch as one ``h``): about three
    bytes a point.
    """
    width = max(SPARK_STEP * (len(values) - 1), 1)
    lo = min(values, default=0.0)
    span = max(values, default=0.0) - lo
    top = SPARK_UNITS - 2  # a unit of room above and below for the stroke
    ys = [top + 1 - round((v - lo) / span * top) for v in values] if span else [SPARK_UNITS // 2] * len(values)
    path = [f"M0 {ys[0]}" if ys else "M0 0"]
    flat = 0  # steps without a change, drawn as one horizontal line
    drawing = False  # after an "l": the next step needs no letter
    for before, after in zip(ys, ys[1:]):
        dy = after - before
        if not dy:
            flat += SPARK_STEP
            continue
        if flat:
            path.append(f"h{flat}")
            flat, drawing = 0, False
        path.append((" " if drawing else "l") + str(SPARK_STEP) + (str(dy) if dy < 0 else f" {dy}"))
        drawing = True
    if flat:
        path.append(f"h{flat}")
    # A stretched viewBox keeps every step two units wide (short paths); the stroke keeps its width (CSS).
    return (f'<svg class="spark" viewBox="0 0 {width} {SPARK_UNITS}" preserveAspectRatio="none" role="img">'
            f'<title>{text(label)}</title><path d="{"".join(path)}"/></svg>')


def _axis(points: Sequence[Point]) -> tuple[float, float, list[float], int]:
    """The y axis: its ends, round ticks (1, 2 or 5 times a power of ten, three to six of them) and the decimals
    its labels need. A pass rate's axis stays within 0 % and 100 %."""
    values = [p.mean for p in points] + [v for p in points for v in (p.low, p.high) if v is not None]
    lo, hi = min(values), max(values)
    binary = points[-1].binary
    if hi - lo <= 1e-9 * abs(lo):  # a flat series: centred, with room around it
        pad = 0.05 if binary else abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    rough = (hi - lo) / 4
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(f * power for f in (1, 2, 5, 10) if f * power >= rough)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    if binary:
        first, last = max(first, 0), min(last, round(1 / step))
    ticks = [i * step for i in range(first, last + 1)]
    decimals = max(0, -math.floor(math.log10(step * (100 if binary else 1)) + 1e-9))
    return ticks[0], ticks[-1], ticks, decimals


def _tick(value: float, binary: bool, decimals: int) -> str:
    return f"{value * 100:.{decimals}f}%" if binary else f"{value:.{decimals}f}"


def _date(time: str) -> str:
    """``2026-11-23 18:00``: an axis label (a run's time is UTC, ``2026-11-23T18:00:00Z``)."""
    return time[:16].replace("T", " ")


def point_label(point: Point) -> str:
    """A point's tooltip: when, from where, the value, its interval and what happened there."""
    where = "baseline" if point.source == BASELINE else "run"
    commit = f" {point.commit}" if point.commit else ""
    value = value_label(point.mean, point.binary)
    if point.n > 1:
        value += f" (n={point.n})"
    if point.low is not None and point.high is not None:
        value += f", 90% interval {value_label(point.low, point.binary)} to {value_label(point.high, point.binary)}"
    notes = f"; {', '.join(point.notes)}" if point.notes else ""
    return f"{point.time[:16].replace('T', ' ')} {where}{commit}: {value}{notes}"


def trend_chart(points: Sequence[Point], title: str, *, unit: str = "") -> str:
    """A trend chart of ``points`` (oldest first, one step each): the line, the interval band where there is one,
    dashed lines where a fingerprint changed, hollow squares for accepted baselines, the last point filled.

    ``title`` names the chart for people and screen readers; ``unit`` is said in the description ("tests").
    """
    total = len(points)
    lo, hi, ticks, decimals = _axis(points)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(total - 1, 1)
    xs = [LEFT + (i * step if total > 1 else plot_w / 2) for i in range(total)]

    def y(value: float) -> float:  # within the plot: a pooled rate's band can reach past 100 %
        return TOP + (hi - min(max(value, lo), hi)) / (hi - lo) * plot_h

    binary = points[-1].binary
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{text(title)}</title>']
    last = points[-1]
    described = f"{total} points from {_date(points[0].time)} to {_date(last.time)}; last " \
                f"{value_label(last.mean, binary)}"
    if last.low is not None and last.high is not None:
        described += f" (90% interval {value_label(last.low, binary)} to {value_label(last.high, binary)})"
    if unit:
        described += f" over {last.n} {unit}"
    described += f"; lowest {value_label(min(p.mean for p in points), binary)}, highest " \
                 f"{value_label(max(p.mean for p in points), binary)}"
    changes = sum(1 for p in points if any(n != ACCEPTED for n in p.notes))
    if changes:
        described += f"; {changes} {'point' if changes == 1 else 'points'} where the fingerprint changed"
    out.append(f"<desc>{text(described)}</desc>")
    for value in ticks:
        gy = num(y(value))
        out.append(f'<path class="grid" d="M{LEFT} {gy}H{WIDTH - RIGHT}"/>'
                   f'<text x="{LEFT - 4}" y="{gy}" dy="3" text-anchor="end">{_tick(value, binary, decimals)}</text>')
    base_y = HEIGHT - BOTTOM
    out.append(f'<text x="{LEFT}" y="{base_y + 15}">{_date(points[0].time)}</text>')
    if total > 1:
        out.append(f'<text x="{WIDTH - RIGHT}" y="{base_y + 15}" text-anchor="end">{_date(last.time)}</text>')
    # The interval band, one polygon per run of points that have an interval.
    segment: list[int] = []
    for i in [*range(total), -1]:
        if i >= 0 and points[i].low is not None and points[i].high is not None:
            segment.append(i)
            continue
        if segment:
            upper = " ".join(f"{num(xs[j])} {num(y(points[j].high))}" for j in segment)  # type: ignore[arg-type]
            lower = " ".join(f"{num(xs[j])} {num(y(points[j].low))}" for j in reversed(segment))  # type: ignore[arg-type]
            out.append(f'<path class="band" d="M{upper} {lower}Z"/>')
            segment = []
    # Dashed lines where the fingerprint changed.
    for i, point in enumerate(points):
        if any(n != ACCEPTED for n in point.notes):
            out.append(f'<path class="note" d="M{num(xs[i])} {TOP}V{base_y}"/>')
    coords = [f"{num(x)} {num(y(p.mean))}" for x, p in zip(xs, points)]
    out.append(f'<path class="line" d="M{" ".join(coords)}"/>' if total > 1 else "")
    for i, (point, xy) in enumerate(zip(points, coords)):
        cx, cy = xy.split(" ")
        label = text(point_label(point))
        if point.source == BASELINE:
            out.append(f'<rect class="acc" x="{num(float(cx) - 3)}" y="{num(float(cy) - 3)}" width="6" height="6">'
                       f"<title>{label}</title></rect>")
        else:
            current = ' class="cur" r="3.5"' if i == total - 1 else ' r="2.5"'
            out.append(f'<circle cx="{cx}" cy="{cy}"{current}><title>{label}</title></circle>')
    out.append("</svg>")
    return "".join(out)
