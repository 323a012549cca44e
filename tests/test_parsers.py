"""Property-based tests of every parser of user-editable input: parsed, or a clear error; never another exception.

Example counts are kept small so the whole file runs in a few seconds: 300 per text parser, 150 per
structured one (``max_examples`` below). The examples are derandomized by the suite's hypothesis profile
(conftest.py): the same each run; ``HYPOTHESIS_PROFILE=explore`` draws fresh ones.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmmetrics.baseline import store
from pytest_llmmetrics.baseline.compare import Tolerances, compare
from pytest_llmmetrics.errors import ConfigError

TEXT = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
STRUCTURED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

# Entries that are close to valid, so that the validator's field checks are exercised, not only its top level.
entry_fields = st.fixed_dictionaries(
    {"higher_is_better": st.sampled_from([True, False, None]), "kind": st.sampled_from(["m", "similarity", "pass_rate"]),
     "mean": st.floats(-1e6, 1e6, allow_nan=False) | st.integers(0, 10), "n": st.integers(-1, 300)},
    optional={"passed": st.none() | st.integers(-1, 300) | st.text(max_size=3),
              "std": st.none() | st.floats(-1.0, 1e3, allow_nan=False) | st.text(max_size=3),
              "scale": st.sampled_from(["binary", "numeric", "other", None]),
              "threshold": st.none() | st.text(max_size=5) | st.integers(),
              "extra": json_values},
)
baselines = st.fixed_dictionaries({
    "format": st.sampled_from([1, 1, 1, 2, "1"]),
    "tests": st.dictionaries(st.text(max_size=12), st.fixed_dictionaries(
        {"metrics": st.dictionaries(st.text(max_size=8), entry_fields | json_values, max_size=3)},
        optional={"fingerprint": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2) | json_values},
    ) | json_values, max_size=3),
})


def check_baseline_file(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        tests = store.load_baseline(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)), exc
    else:
        assert tests is not None
        # A baseline that loads can always be compared: with itself, and against shifted values.
        compare(tests, tests, Tolerances())
        shifted = {t: {"metrics": {m: {**e, "mean": e["mean"] + 1} for m, e in v["metrics"].items()}}
                   for t, v in tests.items()}
        compare(tests, shifted, Tolerances.parse("0.5"))
    assert path.read_bytes() == text.encode("utf-8", "surrogatepass")  # never changed


@TEXT
@given(st.text(max_size=300))
def test_any_text_as_baseline_json(tmp_path_factory, text):
    check_baseline_file(tmp_path_factory.mktemp("b") / "baseline.json", text)


@STRUCTURED
@given(baselines)
def test_any_json_shaped_baseline(tmp_path_factory, data):
    check_baseline_file(tmp_path_factory.mktemp("b") / "baseline.json", json.dumps(data, indent=2))


@STRUCTURED
@given(baselines)
def test_baseline_errors_name_the_line_of_the_broken_entry(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("b") / "baseline.json"
    text = store.dumps_baseline(data["tests"]) if all(
        isinstance(t, dict) and isinstance(t.get("metrics"), dict) for t in data["tests"].values()) else ""
    if not text:
        return
    path.write_text(text)
    try:
        store.load_baseline(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}:"), exc


def test_a_baseline_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_bytes(b'{"format": 1,\n "tests": {"\xff": {}}}')
    try:
        store.load_baseline(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: line 2") and "UTF-8" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a non-UTF-8 baseline loaded")
    assert path.read_bytes() == b'{"format": 1,\n "tests": {"\xff": {}}}'


tolerance_text = st.text(alphabet=string.ascii_letters + string.digits + ":,%.-+_[] \t\n\x00", max_size=40)


@TEXT
@given(st.one_of(st.text(max_size=40), tolerance_text))
def test_any_tolerance_spec(spec):
    try:
        tolerances = Tolerances.parse(spec)
    except ConfigError as exc:
        assert str(exc).startswith("--llm-tolerance: "), exc
    else:
        for name in tolerances.by_name:
            assert tolerances.for_metric(name, name, 2.0) >= 0
        assert tolerances.default[0] >= 0


@TEXT
@given(st.one_of(st.text(max_size=30), st.from_regex(r"(local|openai|py)(:[\w.:-]{0,12})?", fullmatch=True)))
def test_any_model_spec(spec):
    from pytest_llmmetrics.providers.spec import check_spec

    try:
        kind, target = check_spec(spec)
    except ConfigError as exc:
        assert "model spec" in str(exc) or "openai:" in str(exc), exc
    else:
        assert kind in ("local", "openai", "py")


marker_values = json_values | st.floats() | st.tuples(st.text(max_size=3)) | st.lists(st.text(max_size=3), max_size=2)
marker_kwargs = st.dictionaries(
    st.sampled_from(["model", "system", "temperature", "max_tokens", "seed", "top_p", "stop", "presence_penalty",
                     "frequency_penalty", "params", "temprature", "x"]),
    marker_values, max_size=4)


@TEXT
@given(marker_kwargs)
def test_any_marker_arguments(kwargs):
    from pytest_llmmetrics import markers as llm_settings

    try:
        llm_settings.validate_kwargs(kwargs, "test_x.py::test_y: @pytest.mark.llm")
    except ConfigError as exc:
        assert str(exc).startswith("test_x.py::test_y: @pytest.mark.llm"), exc
    else:
        merged = llm_settings.apply(llm_settings.LLMSettings(), kwargs)
        assert merged.call_params()["max_tokens"] >= 1


recording_entries = st.fixed_dictionaries(
    {"key": st.text(max_size=6) | json_values, "test": st.text(max_size=8) | json_values,
     "model": st.sampled_from(["py:bot:reply", "local"]) | json_values,
     "params": st.dictionaries(st.text(max_size=4), json_values, max_size=2) | json_values,
     "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "x"]),
                                                 "content": st.text(max_size=10) | json_values}), max_size=2)
     | json_values,
     "replies": st.lists(st.fixed_dictionaries({"text": st.text(max_size=10) | st.lists(st.text(max_size=4)) | json_values},
                                               optional={"latency_s": json_values, "prompt_tokens": json_values,
                                                         "completion_tokens": json_values,
                                                         "finish_reason": json_values}), max_size=2) | json_values},
)


def check_recording_file(path: Path, data: bytes) -> None:
    from pytest_llmmetrics import replay

    path.write_bytes(data)
    try:
        entries = replay.load(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}:"), exc
    else:
        assert isinstance(entries, dict)
        replay.dump(entries)  # what loads can be written back
    assert path.read_bytes() == data


@TEXT
@given(st.text(max_size=300))
def test_any_text_as_a_recordings_file(tmp_path_factory, text):
    check_recording_file(tmp_path_factory.mktemp("r") / "test_x.llm.json", text.encode())


@STRUCTURED
@given(st.lists(recording_entries, max_size=3), st.sampled_from(["pytest-llmmetrics recordings 1", "other"]))
def test_any_json_shaped_recordings_file(tmp_path_factory, entries, fmt):
    data = {"format": fmt, "about": "", "recordings": entries}
    check_recording_file(tmp_path_factory.mktemp("r") / "test_x.llm.json", json.dumps(data, indent=2).encode())


@TEXT
@given(st.binary(max_size=200))
def test_any_bytes_as_a_recordings_file(tmp_path_factory, data):
    check_recording_file(tmp_path_factory.mktemp("r") / "test_x.llm.json", data)


def test_a_baseline_merged_with_both_sides_kept_names_both_lines(tmp_path):
    entry = '{"higher_is_better": true, "kind": "m", "mean": 1.0, "n": 1}'
    text = ('{\n  "format": 1,\n  "tests": {\n    "t": {\n      "metrics": {\n'
            f'        "m": {entry},\n        "m": {entry}\n      }}\n    }}\n  }}\n}}\n')
    path = tmp_path / "baseline.json"
    path.write_text(text)
    try:
        store.load_baseline(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}:7: the field 'm' appears twice in one object (first on line 6)"), exc
    else:  # pragma: no cover
        raise AssertionError("a merged baseline loaded")
    assert path.read_text() == text


def test_a_recording_with_an_impossible_reply_field_names_the_file_and_line(tmp_path):
    from pytest_llmmetrics import replay

    path = tmp_path / "test_x.llm.json"
    entry = {"key": "k1", "test": "test_x.py::t", "model": "py:bot:reply", "params": {},
             "messages": [{"role": "user", "content": "hi"}],
             "replies": [{"text": "ok", "latency_s": float("nan"), "prompt_tokens": None,
                          "completion_tokens": None, "finish_reason": None}]}
    text = json.dumps({"format": replay.FORMAT, "about": "", "recordings": [entry]}, indent=2)
    path.write_text(text)
    try:
        replay.load(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}:") and "latency_s must be a number of seconds >= 0" in str(exc), exc
    else:  # pragma: no cover
        raise AssertionError("a recording with latency NaN loaded")


def test_json_nested_beyond_the_recursion_limit_is_an_error_not_a_crash(tmp_path):
    from pytest_llmmetrics import replay

    deep = '{"format": 1, "tests": ' + "[" * 100_000 + "]" * 100_000 + "}"
    baseline = tmp_path / "baseline.json"
    baseline.write_text(deep)
    recording = tmp_path / "test_x.llm.json"
    recording.write_text(deep)
    for load, path in ((store.load_baseline, baseline), (replay.load, recording)):
        try:
            load(path)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}:1: nested too deeply to read"), exc
        else:  # pragma: no cover
            raise AssertionError(f"{path.name} loaded")
        assert path.read_text() == deep
