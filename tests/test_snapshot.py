"""The snapshot file format and names, unit level: exact round trip of any text, strict parsing, distinct names."""

from __future__ import annotations

import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

pytest.importorskip("syrupy")

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.files import atomic_write_text
from pytest_llmmetrics.semantic.snapshot import (
    SemanticSnapshotExtension,
    Stored,
    _lines,
    file_stem,
    parse,
    read,
    render,
)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Modest, so the suite stays fast; the @example cases pin the texts that once broke.
EXAMPLES = 200


@settings(max_examples=EXAMPLES, deadline=None)
@given(text=st.text(), samples=st.none() | st.integers(min_value=1, max_value=10_000))
@example(text="Line one.\r\nLine two.\r\n", samples=None)
@example(text="Progress 50%\rProgress 100%", samples=None)
@example(text="trailing   \n\n\n", samples=None)
@example(text="---\nembedding-model: other\n---\n", samples=None)
@example(text="\n---\n", samples=3)
@example(text="", samples=None)
@example(text="Gr\u00fc\u00dfe \U0001f44b\u2028\u2029\x85\x00", samples=None)
def test_any_text_round_trips_exactly_through_the_file(text, samples):
    serialized = render(MODEL, text, samples)
    assert parse(serialized, "f") == Stored(MODEL, text, samples)
    with tempfile.TemporaryDirectory() as folder:  # not tmp_path: one folder per example
        path = Path(folder) / "test_a.llm.txt"
        atomic_write_text(path, serialized)
        extension = SemanticSnapshotExtension()
        data = extension.read_snapshot_data_from_location(snapshot_location=str(path), snapshot_name="test_a",
                                                          session_id="s")
        assert data == serialized
        assert parse(data, str(path)).text == text


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.text())
@example(data="embedding-model: m\nsamples: \u00b2\n---\nx\n")
@example(data="no header\n---\nx")
@example(data=":\n---\n")
def test_any_file_text_is_parsed_or_refused_naming_file_and_line(data):
    try:
        stored = parse(data, "snap.llm.txt")
    except ConfigError as exc:
        assert str(exc).startswith("snap.llm.txt: line ")
    else:
        assert stored.model


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.binary())
def test_any_bytes_are_read_or_refused_naming_the_file(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snap.llm.txt"
        path.write_bytes(data)
        try:
            text = read(path)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}: line ") and "not UTF-8 text" in str(exc)
        else:
            assert text.encode("utf-8") == data
        assert path.read_bytes() == data


def test_a_clean_name_is_syrupys():
    assert file_stem("test_refund") == "test_refund"
    assert file_stem("TestShop.test_refund[late-order]", ".1") == "TestShop.test_refund[late-order].1"


def test_names_that_lose_characters_stay_apart():
    stems = {file_stem(name) for name in ("test_p[a/b]", "test_p[ab]", "test_p[a:b]", "test_p[a\\b]", "test_p[a\tb]")}
    assert len(stems) == 5 and "test_p[ab]" in stems
    assert file_stem("test_p[a/b]").startswith("test_p[ab]~")
    assert file_stem("test_path[a/b]") == "test_path[ab]~cc5b2fe0"  # the README's example
    assert file_stem("test_p[a/b]", ".1") == file_stem("test_p[a/b]") + ".1"  # later asserts of one test line up


@settings(max_examples=EXAMPLES, deadline=None)
@given(name=st.text(min_size=1, max_size=400), other=st.text(min_size=1, max_size=400))
def test_stems_are_file_names_and_differ_where_names_do(name, other):
    stem = file_stem(name)
    assert len(stem) <= 255 - len(".llm.txt")
    assert not set(stem) & set('\\/?*:|"<>')
    assert not any(unicodedata.category(c).startswith("C") for c in stem)  # no control or format characters
    if name != other and len(name) < 200 and len(other) < 200:  # within the length limit, no two ids share a file
        assert stem != file_stem(other)


def test_diff_lines_are_the_texts_own():
    assert _lines("One sentence. Another one.") == ["One sentence. Another one."]
    assert _lines("a\r\nb\rc\n") == ["a\\r", "b\\rc", ""]


def test_snapshots_an_editor_or_git_changed_say_what_happened():
    from pytest_llmmetrics.errors import ConfigError
    from pytest_llmmetrics.semantic.snapshot import parse, render

    text = render("sentence-transformers/all-MiniLM-L6-v2", "Refunds take 30 days.")
    with pytest.raises(ConfigError, match="line endings were changed to CRLF.*__snapshots__/\\*\\* -text' to .gitattributes"):
        parse(text.replace("\n", "\r\n"), "a.llm.txt")
    with pytest.raises(ConfigError, match="starts with a byte-order mark"):
        parse("\ufeff" + text, "a.llm.txt")
    assert parse(text, "a.llm.txt").text == "Refunds take 30 days."


def test_a_threshold_is_a_class_of_its_own_with_the_same_files(request):
    from syrupy.location import PyTestLocation

    strict = SemanticSnapshotExtension.with_threshold(0.9)
    assert strict is SemanticSnapshotExtension.with_threshold(0.9)  # one class per value, not one per assert
    assert strict.threshold == 0.9 and SemanticSnapshotExtension.threshold is None
    assert SemanticSnapshotExtension.with_threshold(0.95).threshold == 0.95
    location = PyTestLocation(request.node)
    for index in (0, 1, "1"):
        assert strict.get_location(test_location=location, index=index) == (
            SemanticSnapshotExtension.get_location(test_location=location, index=index))


def test_an_asserts_index_and_its_name_have_their_own_files(request):
    from syrupy.location import PyTestLocation

    location = PyTestLocation(request.node)
    second = SemanticSnapshotExtension.get_location(test_location=location, index=1)
    named = SemanticSnapshotExtension.get_location(test_location=location, index="1")
    assert second.endswith(".1.llm.txt") and named.endswith("[1].llm.txt")  # remembered apart


def test_the_syrupy_majors_guarded_are_those_pyproject_allows():
    """`SYRUPY_MAJORS` (where the one private syrupy call runs) and the `semantic` extra's bound agree."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    from pytest_llmmetrics.semantic.snapshot import SYRUPY_MAJORS

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    spec = next(Requirement(r).specifier for r in project["project"]["optional-dependencies"]["semantic"]
                if Requirement(r).name == "syrupy")
    allowed = {major for major in range(30) if any(spec.contains(f"{major}.{minor}") for minor in range(100))}
    assert allowed == set(SYRUPY_MAJORS), f"pyproject allows syrupy {spec}, the code guards {SYRUPY_MAJORS}"
