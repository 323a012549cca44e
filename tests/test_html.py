"""The HTML report: the page from plain data, parsed back; black-box runs serial and ``-n 2``; a real browser."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser

import pytest
from browser import build_demo, dump_dom, find_chromium, normalised, screenshot
from conftest import dedent

from pytest_llmmetrics.baseline import aggregate, charts, html
from pytest_llmmetrics.baseline.compare import Tolerances, compare
from pytest_llmmetrics.baseline.trend import BASELINE, RUN, Point, Run

HOSTILE_TEST = 'test_x.py::test_a[<script>alert("t")</script>&\'"]'
HOSTILE_METRIC = "<img src=x onerror=alert(1)>&amp;"
HOSTILE_GROUP = '"><b>group</b>'


class Page(HTMLParser):
    """What the tests look at: tags, attributes, text, and each SVG's own title and description."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self.svgs: list[dict[str, str]] = []
        self._svg_depth = -1  # depth inside the current <svg>; -1: outside
        self._capture: str | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "svg":
            self.svgs.append({"class": attributes.get("class") or "", "role": attributes.get("role") or "",
                              "title": "", "desc": ""})
            self._svg_depth = 0
        elif self._svg_depth >= 0:
            self._svg_depth += 1
            if self._svg_depth == 1 and tag in ("title", "desc"):
                self._capture = tag
        if tag == "script":
            self._capture = "script"

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg_depth = -1
        elif self._svg_depth >= 0:
            self._svg_depth -= 1
        self._capture = None

    def handle_data(self, data):
        if self._capture == "script":
            self.scripts.append(data)
            return
        self.text.append(data)
        if self._capture in ("title", "desc"):
            self.svgs[-1][self._capture] += data

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    @property
    def words(self) -> str:
        return "".join(self.text)


def entry(mean, n=1, *, kind="score", higher=True, track="utility", group="g", passed=None, std=0.0, scale="numeric",
          threshold=None):
    return {"group": group, "higher_is_better": higher, "kind": kind, "mean": mean, "n": n, "passed": passed,
            "scale": scale, "std": std, "threshold": threshold, "track": track}


def suite(score_a: float, score_b: float, *, prompt: str = "p1", rate: int = 18) -> dict:
    """Two tests: a score each, a sampled pass rate, and one with hostile names everywhere."""
    return {
        "test_a.py::test_one": {"fingerprint": {"model": "local", "prompt": prompt},
                                "metrics": {"score": entry(score_a, threshold=">= 0.5"),
                                            "contains[x]": entry(rate / 20, 20, kind="contains", passed=rate,
                                                                 std=0.3, scale="binary")}},
        "test_a.py::test_two": {"fingerprint": {"model": "local", "prompt": prompt},
                                "metrics": {"score": entry(score_b),
                                            "contains[x]": entry(19 / 20, 20, kind="contains", passed=19, std=0.2,
                                                                 scale="binary")}},
        HOSTILE_TEST: {"fingerprint": {"model": "<b>model</b>", "prompt": prompt},
                       "metrics": {HOSTILE_METRIC: entry(1.0 + score_a, kind=HOSTILE_METRIC, group=HOSTILE_GROUP)}},
    }


def page_of(runs: list[Run], reference: dict | None = None) -> str:
    current = runs[-1].tests
    reference = reference if reference is not None else runs[0].tests
    rows = compare(reference, current, Tolerances())
    return html.render(total="3 tests, 5 metrics: 2 regressed against the baseline .llmmetrics/baseline.json",
                       rows=rows, aggregates=aggregate.pooled(reference, current), tests=current, runs=runs,
                       generated=runs[-1].time)


def history(n: int = 4) -> list[Run]:
    """``n`` runs a day apart; the prompt changes in the third; the last run regresses; the second is a baseline."""
    runs = []
    for i in range(n):
        last = i == n - 1
        tests = suite(0.8 + 0.01 * i - 0.3 * last, 0.7 + 0.3 * last, prompt="p1" if i < 2 else "p2",
                      rate=10 if last else 18)
        runs.append(Run(f"2026-11-{10 + i}T12:00:00Z", BASELINE if i == 1 else RUN, "abc123" if i == 1 else None,
                        tests))
    return runs


# --- the page from plain data -------------------------------------------------------------------------------------


def test_hostile_names_are_escaped_and_nothing_is_fetched():
    text = page_of(history())
    page = Page(text)
    assert len(page.scripts) == 1 and page.all("script") == [{}]  # only the page's own inline script
    assert not page.all("img") and not page.all("b")  # the names stayed text
    assert HOSTILE_TEST in page.words and HOSTILE_METRIC in page.words and HOSTILE_GROUP in page.words
    assert "<b>model</b>" in page.words
    assert "<img" not in text and "<b>" not in text and "<script>alert" not in text
    for tag, attrs in page.tags:
        assert "src" not in attrs, tag  # no image, script, font or frame from anywhere
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)  # no inline handlers
    assert "http:" not in text and "https:" not in text and "url(" not in text and "@import" not in text
    # Every svg is labelled: a title (its accessible name and tooltip) and role="img"; charts describe themselves.
    assert page.svgs and all(svg["title"] and svg["role"] == "img" for svg in page.svgs)
    assert all(svg["desc"] for svg in page.svgs if svg["class"] == "chart")


def test_the_page_has_the_overview_moved_metrics_and_a_drill_down_per_test():
    runs = history()
    page = Page(page_of(runs))
    ids = {a.get("id") for _, a in page.tags}
    assert {"overview", "moved", "tests", "pooled", "moved-table", "t0", "t1", "t2"} <= ids
    assert "Trends over 3 runs and 1 committed baseline, 2026-11-10 to 2026-11-13" in page.words
    charts_by_title = {svg["title"]: svg for svg in page.svgs if svg["class"] == "chart"}
    # Pooled trends: per kind, over the suite's tests (the hostile kind has one test: not pooled).
    assert {"suite · score (higher is better)", "suite · contains (higher is better)"} <= set(charts_by_title)
    assert "4 points from 2026-11-10 12:00 to 2026-11-13 12:00" in charts_by_title["suite · score (higher is better)"][
        "desc"]
    # The moved metrics, regressions first, each with its trend chart.
    moved = [a for a in page.all("tr") if a.get("data-verdicts") and a.get("data-verdicts") != "unchanged"]
    assert moved and moved[0]["data-verdicts"] == "regressed"
    assert "test_a.py::test_one · score" in charts_by_title
    assert "1 point where the fingerprint changed" in charts_by_title["test_a.py::test_one · score"]["desc"]
    # The drill-down: fingerprint, thresholds, a sparkline per metric with a history.
    assert page.all("table", id="t0") and "prompt p2" in page.words and "group g · model local" in page.words
    assert ">= 0.5" in page.words
    sparks = [svg for svg in page.svgs if svg["class"] == "spark"]
    assert len(sparks) == 5 and any(s["title"] == "score: 4 points, 0.53 to 0.82, last 0.53" for s in sparks)


def test_the_page_depends_on_its_input_only():
    assert page_of(history()) == page_of(history())


def test_many_moved_metrics_get_a_chart_each_up_to_the_cap():
    tests = {f"t.py::test_{i:03d}": {"fingerprint": {}, "metrics": {"m": entry(float(i))}} for i in range(80)}
    moved = {name: {"fingerprint": {}, "metrics": {"m": entry(float(i) - 1)}} for i, name in enumerate(tests)}
    runs = [Run("2026-11-10T00:00:00Z", RUN, None, tests), Run("2026-11-11T00:00:00Z", RUN, None, moved)]
    page = page_of(runs)
    parsed = Page(page)
    moved_charts = [s for s in parsed.svgs if s["class"] == "chart" and "::" in s["title"]]
    assert len(moved_charts) == html.MAX_CHARTS
    assert f"{80 - html.MAX_CHARTS} more moved metrics have their sparkline in their test's drill-down" in page


def test_no_history_no_reference():
    tests = suite(0.8, 0.7)
    page = html.render(total="3 tests, 5 metrics: 5 new", rows=compare(None, tests, Tolerances()),
                       aggregates=[], tests=tests, runs=[Run("2026-11-10T00:00:00Z", RUN, None, tests)])
    parsed = Page(page)
    assert "No pooled comparison" in parsed.words and "Moved metrics (5)" in parsed.words
    assert not [s for s in parsed.svgs if s["class"] == "spark"]  # one point is no line


# --- charts ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [(12.0, "12"), (0.5, ".5"), (-0.5, "-.5"), (-0.04, "0"), (3.14159, "3.1"),
                                              (-12.36, "-12.4")])
def test_numbers_in_svg_are_short(value, shown):
    assert charts.num(value) == shown


def test_sparklines_are_relative_paths_with_flat_stretches_as_one_step():
    assert 'd="M0 39l2-38h4l2 38"' in charts.sparkline([1, 2, 2, 2, 1], "x")
    assert 'd="M0 20h4"' in charts.sparkline([5, 5, 5], "flat")
    assert 'viewBox="0 0 8 40"' in charts.sparkline([1, 2, 3, 4, 5], "x")
    assert "<title>a &lt;b&gt; &amp; &quot;c&quot;</title>" in charts.sparkline([1, 2], 'a <b> & "c"')


def test_trend_charts_draw_bands_notes_baselines_and_this_run():
    points = [Point("2026-11-10T00:00:00Z", RUN, None, 0.8, 10, 0.7, 0.9, (), True),
              Point("2026-11-11T00:00:00Z", BASELINE, "abc", 0.8, 10, 0.7, 0.9, ("baseline accepted",), True),
              Point("2026-11-12T00:00:00Z", RUN, "def", 0.5, 10, 0.4, 0.6, ("prompt changed",), True)]
    svg = charts.trend_chart(points, "t.py::test · rate")
    parsed = Page(svg)
    assert parsed.svgs[0]["title"] == "t.py::test · rate"
    assert "3 points from 2026-11-10 00:00 to 2026-11-12 00:00; last 50% (90% interval 40% to 60%)" in \
        parsed.svgs[0]["desc"]
    assert "1 point where the fingerprint changed" in parsed.svgs[0]["desc"]
    assert len(parsed.all("path", **{"class": "band"})) == 1 and len(parsed.all("path", **{"class": "note"})) == 1
    assert len(parsed.all("rect", **{"class": "acc"})) == 1 and len(parsed.all("circle", **{"class": "cur"})) == 1
    assert "2026-11-12 00:00 run def: 50% (n=10), 90% interval 40% to 60%; prompt changed" in parsed.words
    for tag, attrs in parsed.tags:  # coordinates to a tenth of a pixel at most
        for name in ("cx", "cy", "x", "y"):
            if name in attrs:
                assert len(attrs[name].partition(".")[2]) <= 1, (tag, attrs)


@pytest.mark.parametrize(("values", "binary", "band", "ticks"), [
    ([0.7552, 0.8248], False, 0.0, ["0.74", "0.76", "0.78", "0.80", "0.82", "0.84"]),
    ([13.0, 13.0], False, 0.0, ["11", "12", "13", "14", "15"]),
    ([0.0, 0.0], False, 0.0, ["-1.0", "-0.5", "0.0", "0.5", "1.0"]),
    ([1.0, 1.0], True, 0.0, ["90%", "95%", "100%"]),
    ([0.6, 0.95], True, 0.1, ["40%", "60%", "80%", "100%"]),  # the band would reach 105 %: the axis stops at 100
])
def test_chart_axes_have_round_ticks(values, binary, band, ticks):
    points = [Point(f"2026-11-1{i}T00:00:00Z", RUN, None, v, 10, (v - band) if band else None,
                    (v + band) if band else None, (), binary) for i, v in enumerate(values)]
    svg = charts.trend_chart(points, "t")
    labels = [label for label in re.findall(r'text-anchor="end">([^<]+)</text>', svg) if "2026" not in label]
    assert labels == ticks


def test_pooled_series_mean_over_tests_with_an_interval_and_notes():
    runs = history()
    found = {label + " " + kind: points for label, kind, _, points in html.pooled_series(runs, runs[-1].tests)}
    assert set(found) == {"suite score", "suite contains"}  # the hostile kind has one test: not pooled
    score = found["suite score"]
    assert [p.n for p in score] == [2, 2, 2, 2]
    assert score[0].mean == pytest.approx((0.8 + 0.7) / 2)
    assert score[0].low < score[0].mean < score[0].high
    assert score[1].notes == ("baseline accepted",)
    assert score[2].notes == ("prompt changed (2 tests)",)
    assert found["suite contains"][0].binary


def test_pooled_series_per_track_when_a_kind_spans_tracks():
    tests = {f"t.py::test_{i}": {"fingerprint": {}, "metrics": {"score": entry(0.5 + i / 10, track=track)}}
             for i, track in enumerate(["utility", "utility", "alignment", "alignment"])}
    runs = [Run("2026-11-10T00:00:00Z", RUN, None, tests)]
    found = {label: points for label, _, _, points in html.pooled_series(runs, tests)}
    assert list(found) == ["suite", "track utility", "track alignment"]
    assert found["track utility"][0].mean == pytest.approx(0.55) and found["suite"][0].n == 4


# --- black box: the option, its checks, serial and -n 2 ------------------------------------------------------------

SUITE = dedent(
    """
    import os
    import pytest
    from pytest_llmmetrics import metrics

    WORDS = int(os.environ.get("WORDS", "5"))
    PROMPT = os.environ.get("PROMPT", "Say hi")

    @pytest.mark.llm(model="py:bot:reply", group='"><b>billing</b>')
    @pytest.mark.parametrize("name", ['<script>alert("x")</script>&\\'', "plain"])
    def test_len(llm, llm_metrics, name):
        llm(PROMPT)
        llm_metrics.expect(" ".join(["w"] * WORDS), metrics.word_count(max=50))
        llm_metrics.record("<img src=x onerror=alert(1)>", 0.5 + WORDS / 100, higher_is_better=True)

    @pytest.mark.parametrize("i", range(3))
    def test_rate(i, llm_metrics):
        llm_metrics.expect(["Paris"] * (60 - WORDS) + ["Lyon"] * WORDS, metrics.contains("Paris"), pass_rate=0.1)
    """
)


@pytest.fixture
def html_suite(bot, monkeypatch):
    bot.makepyfile(test_suite=SUITE)
    for name in ("WORDS", "PROMPT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    return bot


def test_the_report_shows_the_trend_of_the_run_history(run, html_suite, monkeypatch):
    run("--llm-baseline-update").assert_outcomes(passed=5)
    run().assert_outcomes(passed=5)
    monkeypatch.setenv("WORDS", "9")
    monkeypatch.setenv("PROMPT", "Say hello")
    html_suite.makeini("[pytest]\nllm_report_html = out/report.html\n")
    result = run()
    result.assert_outcomes(passed=5)
    page = Page((html_suite.path / "out" / "report.html").read_text(encoding="utf-8"))
    assert len(page.scripts) == 1 and not page.all("img") and not page.all("b")
    assert "Trends over 3 runs" in page.words
    assert 'test_suite.py::test_len[<script>alert("x")</script>&\']' in page.words
    assert "<img src=x onerror=alert(1)>" in page.words and '"><b>billing</b>' in page.words
    regressed = [a for a in page.all("tr") if a.get("data-verdicts") == "regressed"]
    assert len(regressed) >= 3  # word_count twice and the pass rates
    titles = [svg["title"] for svg in page.svgs if svg["class"] == "chart"]
    assert "suite · word_count (lower is better)" in titles
    assert "test_suite.py::test_len[plain] · word_count" in titles
    assert any("1 point where the fingerprint changed" in svg["desc"] for svg in page.svgs if svg["class"] == "chart")
    assert "prompt changed (2 tests)" in page.words  # the pooled chart's caption
    result = run("--llm-report-html", "cli.html")  # the flag wins over the ini key
    assert (html_suite.path / "cli.html").is_file()


def test_serial_and_xdist_runs_write_the_same_report(html_suite, monkeypatch):
    pages = []
    for args in (["-p", "no:xdist"], ["-n", "2"]):
        monkeypatch.delenv("WORDS", raising=False)
        for old in (html_suite.path / ".llmmetrics" / "history").glob("*.json"):
            old.unlink()
        html_suite.runpytest(*args, "--llm-baseline-update").assert_outcomes(passed=5)
        monkeypatch.setenv("WORDS", "7")
        html_suite.runpytest(*args, "--llm-report-html", "report.html").assert_outcomes(passed=5)
        pages.append((html_suite.path / "report.html").read_text(encoding="utf-8"))
    assert "Moved metrics (" in pages[0] and "generated 20" in pages[0]
    assert normalised(pages[0]) == normalised(pages[1])


def test_paths_that_can_never_be_written_are_usage_errors(run, bot):
    bot.makepyfile(test_a="def test_a(llm_metrics):\n    llm_metrics.record('m', 1.0)\n")
    (bot.path / "adir").mkdir()
    (bot.path / "afile").write_text("")
    os.mkfifo(bot.path / "fifo")
    run("--llm-baseline-update").assert_outcomes(passed=1)
    for target, message in (("adir", "adir is a directory; give a file path, e.g. --llm-report-html=llm-report.html"),
                            ("fifo", "is not a regular file"), ("afile/report.html", "afile is a file"),
                            (".llmmetrics/baseline.json", "the plugin's own file"),
                            (".llmmetrics/history/r.html", "the plugin's own file")):
        result = run("--llm-report-html", target)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, target
        assert "--llm-report-html / llm_report_html: " in result.stderr.str() and message in result.stderr.str()
        assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_report_that_cannot_be_written_at_the_end_is_a_warning(run, bot):
    # The folder is free when pytest starts; the test puts a file in its way.
    bot.makepyfile(test_a=dedent(
        """
        def test_a(llm_metrics, pytestconfig):
            (pytestconfig.rootpath / "out").write_text("in the way")
            llm_metrics.record("m", 1.0)
        """))
    result = run("--llm-report-html", "out/report.html", "--llm-fail-on-regression")
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["warning: could not write out/report.html: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert list((bot.path / ".llmmetrics" / "history").glob("*.json"))  # the rest was written


# --- a real browser ------------------------------------------------------------------------------------------------

PROBE = """<script>
(function () {
  var table = document.getElementById("moved-table");
  var button = table.tHead.rows[0].cells[4].querySelector("button");
  function deltas() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[4].getAttribute("data-v"); });
  }
  button.click();
  var ascending = deltas(), sort = table.tHead.rows[0].cells[4].getAttribute("aria-sort");
  button.click();
  var descending = deltas();
  var input = document.querySelector('input[data-for="moved"]');
  input.value = "shipping";
  input.dispatchEvent(new Event("input"));
  var shown = Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return !r.hidden; });
  var select = document.querySelector('select[data-for="tests"]');
  select.value = "regressed";
  select.dispatchEvent(new Event("input"));
  var tests = document.querySelectorAll("#tests details:not([hidden])").length;
  document.body.setAttribute("data-probe", JSON.stringify({ascending: ascending, descending: descending, sort: sort,
    shown: shown.map(function (r) { return r.cells[0].textContent; }), rows: table.tBodies[0].rows.length,
    output: document.querySelector('output[data-for="moved"]').textContent, tests: tests}));
})();
</script>"""


@pytest.fixture
def browser():
    found = find_chromium()
    if found is None:
        pytest.skip("needs Chromium for the browser checks (apt-get install chromium; .ci/run installs it)")
    return found


@pytest.fixture
def demo(pytester, monkeypatch):
    """The demo suite of the README screenshot, run through its history; the path of its report."""
    pytester.syspathinsert()
    report = pytester.path / "report.html"

    def run(demo_run, args):
        monkeypatch.setenv("DEMO_RUN", str(demo_run))
        return pytester.runpytest("-p", "no:xdist", *args)

    build_demo(pytester.path, run, report)
    return report


def test_the_report_renders_in_chromium(browser, demo, tmp_path):
    text = demo.read_text(encoding="utf-8")
    page = Page(text)
    dom, console = dump_dom(browser, demo, tmp_path / "profile")
    assert console == []  # no error, no warning, nothing logged at all
    rendered = Page(dom)
    body = rendered.all("body")[0]
    assert body["data-ready"] == "1"  # the script ran to its end
    assert int(body["data-charts"]) == len([s for s in page.svgs if s["class"] == "chart"]) > 5
    assert int(body["data-sparklines"]) == len([s for s in page.svgs if s["class"] == "spark"]) > 10
    assert len(rendered.all("button")) >= 9  # the sortable headers became buttons
    assert not rendered.all("details", open="")
    linked = [a for a in page.all("a") if a["href"].startswith("#t")][-1]  # a moved metric's link to its test
    dom, console = dump_dom(browser, demo, tmp_path / "profile", fragment=linked["href"][1:])
    assert console == [] and len(Page(dom).all("details", open="")) == 1  # the test's drill-down opened
    shot = tmp_path / "report.png"
    screenshot(browser, demo, tmp_path / "profile", shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_tables_sort_and_filter_in_chromium(browser, demo, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(demo.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom, console = dump_dom(browser, probed, tmp_path / "profile")
    assert console == []
    probe = json.loads(Page(dom).all("body")[0]["data-probe"])
    numbers = [float(v) if v else float("nan") for v in probe["ascending"]]
    known = [v for v in numbers if v == v]
    assert known == sorted(known) and len(known) >= 2  # by number, not text; missing deltas last
    assert probe["sort"] == "ascending" and probe["descending"][: len(known)] == probe["ascending"][: len(known)][::-1]
    assert probe["shown"] and all("shipping" in test for test in probe["shown"]) and len(probe["shown"]) < probe["rows"]
    assert probe["output"] == f"{len(probe['shown'])} shown"
    assert 0 < probe["tests"] < 8  # only the tests with a regression


def test_the_browser_check_sees_script_errors(browser, tmp_path):
    """The console check can fail: a page whose script throws is caught."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><script>document.body.dataset.ready = missing.value;</script>'
                    "</body></html>")
    dom, console = dump_dom(browser, page, tmp_path / "profile")
    assert any("Uncaught ReferenceError: missing is not defined" in line for line in console)
    assert "data-ready" not in dom
