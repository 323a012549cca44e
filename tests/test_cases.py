"""``cases()``: parametrized tests from JSON Lines, JSON, CSV and YAML files."""

from __future__ import annotations

import sys

import pytest
from conftest import dedent

from pytest_llmmetrics import cases
from pytest_llmmetrics.errors import ConfigError

TEST = dedent("""
    import pytest
    from pytest_llmmetrics import cases

    @pytest.mark.parametrize("case", cases("data/FILE"ARGS))
    def test_case(case):
        assert case["answer"] == str(case["a"] + case["b"]) or case["answer"] == case["a"] + case["b"]
    """)


def project(pytester: pytest.Pytester, name: str, content: str, args: str = "") -> pytest.Pytester:
    pytester.path.joinpath("data").mkdir(exist_ok=True)
    pytester.path.joinpath("data", name).write_text(content)
    pytester.makepyfile(test_data=TEST.replace("FILE", name).replace("ARGS", args))
    return pytester


@pytest.mark.parametrize(("name", "content"), [
    ("c.jsonl", '{"id": "small", "a": 1, "b": 2, "answer": 3}\n\n{"a": 2, "b": 2, "answer": 5, "xfail": "off by one"}\n'
                '{"a": 0, "b": 0, "answer": 0, "skip": "not today"}\n'),
    ("c.json", '[\n  {"id": "small", "a": 1, "b": 2, "answer": 3},\n  {"a": 2, "b": 2, "answer": 5,\n'
               '   "xfail": "off by one"},\n  {"a": 0, "b": 0, "answer": 0, "skip": "not today"}\n]\n'),
    ("c.yaml", "- id: small\n  a: 1\n  b: 2\n  answer: 3\n- a: 2\n  b: 2\n  answer: 5\n  xfail: off by one\n"
               "- a: 0\n  b: 0\n  answer: 0\n  skip: not today\n"),
])
def test_each_format_gives_ids_and_marks(pytester, name, content):
    result = project(pytester, name, content).runpytest("-v", "-p", "no:xdist", "-rsx")
    result.assert_outcomes(passed=1, xfailed=1, skipped=1)
    first_line_of = {"c.jsonl": (3, 4), "c.json": (3, 5), "c.yaml": (5, 9)}[name]
    result.stdout.fnmatch_lines([
        "*test_case[[]small] PASSED*",
        f"*test_case[[]line{first_line_of[0]}] XFAIL*",
        f"*test_case[[]line{first_line_of[1]}] SKIPPED*",
    ], consecutive=False)
    result.stdout.fnmatch_lines(["*not today*", "*off by one*"], consecutive=False)


def test_csv_values_are_strings_and_id_names_a_field(pytester):
    content = 'name,a,b,answer\nsum,1,2,3\n"quoted, name",2,2,4\n'
    test = dedent("""
        import pytest
        from pytest_llmmetrics import cases

        @pytest.mark.parametrize("case", cases("data/c.csv", id="name"))
        def test_case(case):
            assert case["answer"] == str(int(case["a"]) + int(case["b"]))
        """)
    pytester.path.joinpath("data").mkdir()
    pytester.path.joinpath("data", "c.csv").write_text(content)
    pytester.makepyfile(test_data=test)
    result = pytester.runpytest("-v", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_case[[]sum] PASSED*", "*test_case[[]quoted, name] PASSED*"])


def test_paths_are_relative_to_the_test_file_not_the_working_directory(pytester):
    sub = pytester.path / "suite"
    sub.mkdir()
    (sub / "cases.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    (sub / "test_sub.py").write_text(dedent("""
        import pytest
        from pytest_llmmetrics import cases

        @pytest.mark.parametrize("case", cases("cases.jsonl"))
        def test_it(case):
            assert case["a"] in (1, 2)
        """))
    result = pytester.runpytest("-p", "no:xdist", "-v", "suite")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_it[[]line1] PASSED*", "*test_it[[]line2] PASSED*"])


def test_case_files_serial_and_under_xdist(run, bot):
    project(bot, "c.jsonl", '{"a": 1, "b": 2, "answer": 3}\n{"a": 2, "b": 3, "answer": 5}\n')
    result = run("-v")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "test_data.py::test_case[line1]" in out and "test_data.py::test_case[line2]" in out


@pytest.mark.parametrize(("name", "content", "args", "message"), [
    ("c.jsonl", '{"a": 1}\n{"a": 2,}\n', "", "data/c.jsonl:2: not JSON: Expecting property name"),
    ("c.jsonl", '{"a": 1}\n[1, 2]\n', "", "data/c.jsonl:2: a case must be an object"),
    ("c.jsonl", '{"a": 1, "a": 2}\n', "", "data/c.jsonl:1: the field 'a' is given twice"),
    ("c.jsonl", '{"id": "x"}\n{"id": "x"}\n', "", "data/c.jsonl:2: the id 'x' is also the id of the case on line 1"),
    ("c.jsonl", '{"a": 1}\n', ', id="name"', "data/c.jsonl:1: no field 'name' for the case's id"),
    ("c.jsonl", '{"a": 1, "xfail": true}\n', "", "data/c.jsonl:1: 'xfail' gives the reason as a non-empty string"),
    ("c.jsonl", "\n\n", "", "data/c.jsonl: holds no cases"),
    ("c.json", '[\n {"a": 1},\n {"a": 2}\n {"a": 3}\n]\n', "", "data/c.json:4: expected ',' or the closing ']'"),
    ("c.json", '{"a": 1}', "", "data/c.json:1: a JSON case file is a list of objects"),
    ("c.json", '[\n {"a": 1},\n {"a": \n', "", "data/c.json:4: not JSON"),
    ("c.csv", "a,b\n1,2,3\n", "", "data/c.csv:2: more values than columns in the header row"),
    ("c.csv", "a,b\n1\n", "", "data/c.csv:2: fewer values than columns in the header row"),
    ("c.csv", "a,,b\n1,2,3\n", "", "data/c.csv:1: a CSV case file starts with a header row naming every column"),
    ("c.yaml", "- a: 1\n- a: [\n", "", "data/c.yaml:3: not YAML"),
    ("c.yaml", "a: 1\n", "", "data/c.yaml:1: a YAML case file is a list of mappings"),
    ("c.yaml", "- a: 1\n- q: 1\n  r: {s: 1, s: 2}\n  q: 2\n", "",
     "data/c.yaml:3: the field 's' is given twice (also on line 3); keep one"),
    ("c.yaml", "- a: 1\n- q: 1\n  q: 2\n", "", "data/c.yaml:3: the field 'q' is given twice (also on line 2)"),
    ("c.yaml", "- &first {id: a}\n-\n  *first\n", ', id="id"',
     "data/c.yaml:3: the id 'a' is also the id of the case on line 1"),  # an alias: its own line, not the anchor's
    ("c.txt", "a", "", "data/c.txt: cases() reads .csv, .json, .jsonl, .ndjson, .yaml, .yml files"),
    ("missing.jsonl", None, "", "data/missing.jsonl: no such file (cases() paths are relative to the test file)"),
])
def test_a_bad_file_is_a_collection_error_naming_file_and_line(pytester, name, content, args, message):
    pytester.path.joinpath("data").mkdir()
    if content is not None:
        pytester.path.joinpath("data", name).write_text(content)
    pytester.makepyfile(test_data=TEST.replace("FILE", name).replace("ARGS", args))
    result = pytester.runpytest("-p", "no:xdist")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run
    result.stdout.fnmatch_lines(["*ERROR collecting test_data.py*"])
    out = result.stdout.str()
    assert message in out.replace(str(pytester.path) + "/", ""), out
    assert 'cases("data/' in out  # the user's line, not the plugin's frames
    assert "case_files.py" not in out


def test_yaml_without_pyyaml_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text("- a: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ConfigError, match=r"c.yaml: YAML case files need PyYAML: pip install pyyaml"):
        cases(tmp_path / "c.yaml")


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_file_that_is_not_utf8_names_the_line(tmp_path, bom):
    (tmp_path / "c.jsonl").write_bytes(bom + b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"c.jsonl:2: not UTF-8 text \(byte 0xe9\); save the file as UTF-8"):
        cases(tmp_path / "c.jsonl")


def test_a_secret_in_a_case_id_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-TESTabcdef1234567890XYZqwerty")
    (tmp_path / "c.jsonl").write_text('{"id": "key-sk-TESTabcdef1234567890XYZqwerty", "a": 1}\n')
    (param,) = cases(tmp_path / "c.jsonl")
    assert param.id == "key-<redacted:OPENAI_API_KEY>"
    assert param.values[0]["id"] == "key-sk-TESTabcdef1234567890XYZqwerty"  # the case itself is the file's


def test_a_bom_and_crlf_line_endings_are_fine(tmp_path):
    (tmp_path / "c.jsonl").write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"a": 2}\r\n')
    (tmp_path / "c.csv").write_bytes(b"a,b\r\n1,x\r\n")
    assert [p.values[0] for p in cases(tmp_path / "c.jsonl")] == [{"a": 1}, {"a": 2}]
    assert [p.values[0] for p in cases(tmp_path / "c.csv")] == [{"a": "1", "b": "x"}]
