"""Recorded replies: ``--llm-record-mode`` off/none/once/new_episodes/all (DESIGN 2.6)."""

from __future__ import annotations

import copy
import importlib.util
import json
import re

import pytest
from conftest import dedent
from servers import FaultServer

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.redact import safe_params
from pytest_llmmetrics.replay import dump, load, merge, request_key

RECORDING = "__recordings__/test_a.llm.json"

# A model whose every reply differs (a counter), so a replayed reply is told from a new one.
COUNTER = '''
from pytest_llmmetrics import Response
N = [0]
def reply(messages, **params):
    N[0] += 1
    return Response(text=f"reply {N[0]} to {messages[-1]['content']}", prompt_tokens=7, completion_tokens=N[0],
                    finish_reason="stop")
'''

SUITE = dedent(
    """
    import pytest

    pytestmark = pytest.mark.llm(model="py:counter:reply")

    def test_one(llm):
        print("GOT", llm("first").text)

    def test_two(llm):
        print("GOT", llm("second").text)

    def test_three(llm):
        print("GOT", [r.text for r in llm.sample("third", n=3, temperature=0.8)])
    """
)


@pytest.fixture
def counter(bot):
    bot.makepyfile(counter=COUNTER)
    return bot


def got(result: pytest.RunResult) -> list[str]:
    """What the inner tests printed after "GOT" (with -s, or -rP, which xdist relays from its workers)."""
    return sorted(re.findall(r"GOT (.*)", result.stdout.str()))


def entries(bot) -> dict:
    return load(bot.path / RECORDING)


def test_record_then_replay_without_the_model(run, counter):
    counter.makepyfile(test_a=SUITE)
    recorded = run("--llm-record-mode=once", "-rP")  # -rP: the tests' output, relayed from xdist workers too
    recorded.assert_outcomes(passed=3)
    recorded.stdout.fnmatch_lines(["*llm recordings*", f"{RECORDING}: 5 replies recorded"])
    data = entries(counter)
    assert sorted(e["test"] for e in data.values()) == ["test_a.py::test_one", "test_a.py::test_three",
                                                          "test_a.py::test_two"]
    assert [len(e["replies"]) for e in data.values() if e["test"].endswith("three")] == [3]  # episodes

    counter.makepyfile(counter="def reply(messages, **params):\n    raise RuntimeError('model unavailable')\n")
    replayed = run("--llm-record-mode=none", "-rP")
    replayed.assert_outcomes(passed=3)
    assert len(got(recorded)) == 3 and got(replayed) == got(recorded)
    assert "llm recordings" not in replayed.stdout.str()  # replay writes nothing


def test_replayed_replies_keep_latency_and_tokens(bot, counter):
    counter.makepyfile(test_a=dedent(
        """
        import pytest
        from pytest_llmmetrics import metrics

        @pytest.mark.llm(model="py:counter:reply")
        def test_it(llm, llm_metrics):
            llm_metrics.expect(llm("hi"), metrics.latency(max=60), metrics.tokens(max=100))
        """
    ))
    counter.runpytest("--llm-record-mode=all", "--llm-baseline-update").assert_outcomes(passed=1)
    recorded = entries(counter)
    (entry,) = recorded.values()
    assert entry["replies"][0]["completion_tokens"] == 1 and entry["replies"][0]["latency_s"] > 0
    result = counter.runpytest("--llm-record-mode=none", "--llm-report-json=r.json", "-v")
    result.assert_outcomes(passed=1)
    rows = {r["metric"]: r["values"] for r in json.loads((counter.path / "r.json").read_text())["rows"]}
    latency = entry["replies"][0]["latency_s"]
    # Stored with six significant digits (see the README): equal to the recorded latency to 1e-5.
    assert rows["latency_s"]["current"]["mean"] == rows["latency_s"]["baseline"]["mean"] == pytest.approx(latency, rel=1e-5)
    assert rows["tokens"]["current"]["mean"] == rows["tokens"]["baseline"]["mean"] == 1


def test_none_mode_names_the_test_the_prompt_and_the_command(run, counter):
    counter.makepyfile(test_a=SUITE)
    result = run("--llm-record-mode=none")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*no recorded reply for this request in __recordings__/test_a.llm.json "
        "(--llm-record-mode=none replays only)",
        "*  test:   test_a.py::test_two",
        "*  model:  py:counter:reply",
        "*  prompt: 'second'",
        "*Record it with:",
        "*  pytest 'test_a.py::test_two' --llm-record-mode=new_episodes",
    ])
    assert not (counter.path / "__recordings__").exists()
    assert "Traceback" not in result.stdout.str()


def test_run_from_below_the_rootdir_names_the_file_as_typed_there(bot, monkeypatch):
    """The failure names the file and the command from where pytest was started; the summary names the
    file from the rootdir, as the baseline lines do."""
    bot.makeini("[pytest]\n")
    sub = bot.mkdir("sub")
    (sub / "counter.py").write_text(COUNTER)
    (sub / "test_a.py").write_text(SUITE)
    monkeypatch.chdir(sub)
    recorded = bot.runpytest_subprocess("--llm-record-mode=once")
    recorded.assert_outcomes(passed=3)
    recorded.stdout.fnmatch_lines([f"sub/{RECORDING}: 5 replies recorded"])
    (sub / "test_a.py").write_text(SUITE + "\ndef test_four(llm):\n    llm('fourth')\n")
    result = bot.runpytest_subprocess("--llm-record-mode=none")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"*no recorded reply for this request in {RECORDING} (*",
                                 "*  test:   sub/test_a.py::test_four",
                                 "*  pytest 'test_a.py::test_four' --llm-record-mode=new_episodes"])


def test_none_mode_says_which_setting_changed(bot, counter):
    counter.makepyfile(test_a=SUITE)
    counter.runpytest("--llm-record-mode=once").assert_outcomes(passed=3)
    counter.makepyfile(test_a=SUITE.replace('llm("first")', 'llm("first", max_tokens=99)'))
    result = counter.runpytest("--llm-record-mode=none")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*a reply to this prompt is recorded with other settings: max_tokens=256 (now 99)*"])


def test_once_replays_only_when_the_file_exists(bot, counter):
    counter.makepyfile(test_a=SUITE)
    counter.runpytest("--llm-record-mode=once").assert_outcomes(passed=3)
    before = (counter.path / RECORDING).read_text()
    counter.makepyfile(test_a=SUITE + "\ndef test_four(llm):\n    llm('fourth')\n")
    result = counter.runpytest("--llm-record-mode=once")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*(the file exists, so --llm-record-mode=once replays only)*"])
    assert (counter.path / RECORDING).read_text() == before


def test_new_episodes_keeps_what_is_recorded_and_adds_the_rest(bot, counter):
    counter.makepyfile(test_a=SUITE)
    counter.runpytest("--llm-record-mode=once").assert_outcomes(passed=3)
    path = counter.path / RECORDING
    path.write_text(path.read_text().replace('"reply 1 to first"', '"edited by hand"'))
    counter.makepyfile(test_a=SUITE + "\ndef test_four(llm):\n    print('GOT', llm('fourth').text)\n")
    result = counter.runpytest("--llm-record-mode=new_episodes", "-s")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([f"{RECORDING}: 1 reply recorded"])  # only the new test's
    assert "edited by hand" in got(result)
    texts = [r["text"] for e in entries(counter).values() for r in e["replies"]]
    assert "edited by hand" in texts and "reply 1 to fourth" in texts and len(texts) == 6


def test_all_calls_the_model_again_and_overwrites(bot, counter):
    counter.makepyfile(test_a=SUITE)
    counter.runpytest("--llm-record-mode=once").assert_outcomes(passed=3)
    path = counter.path / RECORDING
    path.write_text(path.read_text().replace('"reply 1 to first"', '"edited by hand"'))
    result = counter.runpytest("--llm-record-mode=all", "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert got(result) and "edited by hand" not in got(result)
    texts = sorted(r["text"] for e in entries(counter).values() for r in e["replies"])
    assert "edited by hand" not in texts and len(texts) == 5


def test_all_removes_what_a_test_that_ran_no_longer_sends(bot, counter):
    counter.makepyfile(test_a=SUITE)
    counter.runpytest("--llm-record-mode=once").assert_outcomes(passed=3)
    counter.makepyfile(test_a=SUITE.replace('llm("first")', 'llm("first, reworded")')
                       .replace('llm("second")', 'llm("second, reworded")'))

    # Only test_one runs: its old request goes, test_two (deselected) keeps its recording.
    result = counter.runpytest("--llm-record-mode=all", "-k", "test_one")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines([f"{RECORDING}: 1 reply recorded, 1 request no longer sent removed"])
    prompts = sorted(e["messages"][-1]["content"] for e in entries(counter).values())
    assert prompts == ["first, reworded", "second", "third"]

    # A test that ran and sends nothing any more loses its recording too; new_episodes never removes.
    counter.makepyfile(test_a=SUITE.replace('print("GOT", llm("second").text)', 'pass'))
    counter.runpytest("--llm-record-mode=new_episodes").assert_outcomes(passed=3)
    assert len(entries(counter)) == 4
    result = counter.runpytest("--llm-record-mode=all", "-n", "2")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"{RECORDING}: 4 replies recorded, 2 requests no longer sent removed"])
    prompts = sorted(e["messages"][-1]["content"] for e in entries(counter).values())
    assert prompts == ["first", "third"]


def test_the_file_is_readable_in_a_diff(bot):
    bot.makepyfile(test_a=dedent(
        """
        import pytest

        @pytest.mark.llm(model="py:bot:reply", system="Be brief.\\nBe kind.", seed=1, params={"api_key": "sk-x"})
        def test_it(llm):
            llm("What is the capital?")
        """
    ))
    bot.runpytest("--llm-record-mode=new_episodes").assert_outcomes(passed=1)
    text = (bot.path / RECORDING).read_text()
    key = request_key("py:bot:reply", [{"role": "system", "content": "Be brief.\nBe kind."},
                                       {"role": "user", "content": "What is the capital?"}],
                      safe_params({"temperature": 0.0, "max_tokens": 256, "seed": 1, "api_key": "sk-x"}))
    lines = text.splitlines()
    assert lines[:4] == ['{', '  "format": "pytest-llmmetrics recordings 1",',
                         lines[2], '  "recordings": [']
    assert f'      "key": "{key}",' in lines
    assert '            "Be brief.",' in lines and '            "Be kind."' in lines  # multi-line text: one line each
    assert '        "api_key": "<redacted>",' in lines and "sk-x" not in text
    assert '          "text": "The capital of France is Paris.",' in lines


def test_corrupt_recording_fails_clearly_and_is_left_untouched(bot, counter):
    counter.makepyfile(test_a=SUITE)
    path = counter.path / RECORDING
    path.parent.mkdir()
    path.write_text('{\n  "format": "pytest-llmmetrics recordings 1",\n  "recordings": [\n    {"key": \n')
    result = counter.runpytest("--llm-record-mode=new_episodes")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([f"*{path}:5:1: not valid JSON (Expecting value). Fix it by hand*left untouched*"])
    assert path.read_text().endswith('{"key": \n')
    assert "INTERNALERROR" not in result.stdout.str()


def one_recording() -> str:
    """A recordings file with one request and its reply, as the plugin writes it."""
    return dump({"k1": {"key": "k1", "test": "t", "model": "m", "params": {}, "messages": [
        {"role": "user", "content": "hi"}], "replies": [{"text": "yo", "latency_s": 0.5}]}})


def test_malformed_entry_names_its_line(tmp_path):
    good = one_recording()
    path = tmp_path / "r.llm.json"
    path.write_text(good.replace('"latency_s": 0.5', '"latency_s": "fast"'))
    with pytest.raises(Exception, match=r"r.llm.json:6: recording 0 is malformed: reply field latency_s must be a "
                                        r"number of seconds >= 0 or None, got str \('fast'\)"):
        load(path)


def test_a_merge_that_kept_both_recordings_of_a_request_names_both_lines(run, counter):
    counter.makepyfile(test_a=SUITE)
    counter.runpytest("--llm-record-mode=once").assert_outcomes(passed=3)
    path = counter.path / RECORDING
    data = json.loads(path.read_text())
    # What git leaves when two branches recorded the same request and the merge kept both sides.
    twin = json.loads(json.dumps(data["recordings"][0]))
    twin["replies"][0]["text"] = "the other branch's reply"
    data["recordings"].insert(1, twin)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text)
    first, second = [i for i, line in enumerate(text.splitlines(), 1) if f'"key": "{twin["key"]}"' in line]
    for mode in ("none", "new_episodes", "all"):
        result = run(f"--llm-record-mode={mode}")
        result.assert_outcomes(failed=3 if mode != "all" else 0, passed=0 if mode != "all" else 3)
        if mode != "all":
            result.stdout.fnmatch_lines([(
                f"*{path}:{second}: a second recording of the request recorded on line {first} (key '{twin['key']}', "
                "tests 'test_a.py::test_one' and 'test_a.py::test_one'), as a git merge that kept both sides leaves "
                "it. Keep the entry you want and delete the other.*left untouched*")])
        else:  # "all" records afresh, but never over a file it cannot read
            result.stdout.fnmatch_lines([f"{RECORDING} NOT updated: {path}:{second}: a second recording*"])
        output = result.stdout.str()
        assert "Traceback" not in output and "INTERNALERROR" not in output
        assert path.read_text() == text


def test_a_field_twice_in_one_object_names_both_lines(tmp_path):
    good = one_recording()
    path = tmp_path / "r.llm.json"
    path.write_text(good.replace('      "model": "m",\n', '      "model": "m",\n      "model": "gpt-4o",\n'))
    with pytest.raises(ConfigError, match=r"r\.llm\.json:9: the field 'model' appears twice in one object \(first "
                                          r"on line 8\), as a git merge that kept both sides leaves it\."):
        load(path)
    # The same name in different objects is fine.
    path.write_text(good)
    assert list(load(path)) == ["k1"]


def test_a_recording_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "r.llm.json"
    path.write_bytes(b'{\n  "format": "caf\xe9"\n}\n')
    with pytest.raises(ConfigError, match=r"r\.llm\.json: line 2: not UTF-8 text .*left untouched"):
        load(path)


def test_recorded_under_xdist_by_one_writer(bot, counter):
    """Tests of one module spread over two workers: the controller merges everything into one file."""
    counter.makepyfile(test_a="\n".join(
        ["import pytest", "pytestmark = pytest.mark.llm(model='py:counter:reply')"]
        + [f"def test_{i}(llm):\n    llm('prompt {i}')" for i in range(8)]
    ))
    result = counter.runpytest("-n", "2", "--llm-record-mode=new_episodes")
    result.assert_outcomes(passed=8)
    assert sorted(e["test"] for e in entries(counter).values()) == sorted(f"test_a.py::test_{i}" for i in range(8))
    assert [p.name for p in (counter.path / "__recordings__").iterdir()] == ["test_a.llm.json"]  # no temp files


# Not importorskip: pytester drops modules imported during a test, and numpy cannot be imported twice.
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs pytest-llmmetrics[local]")
def test_replay_of_the_real_local_model_without_llama_cpp(run, bot):
    bot.makepyfile(test_a=dedent(
        """
        import pytest
        from pytest_llmmetrics import metrics

        pytestmark = pytest.mark.llm(system="You are a helpful assistant. Answer in one short sentence.", max_tokens=48)

        def test_capital(llm, llm_metrics):
            reply = llm("What is the capital of France?")
            print("GOT", reply.text, reply.completion_tokens, reply.latency_s)
            llm_metrics.expect(reply, metrics.contains("Paris"))
        """
    ))
    recorded = run("--llm-record-mode=once", "-rP")
    recorded.assert_outcomes(passed=1)
    bot.makeconftest("import sys\nsys.modules['llama_cpp'] = None  # the model is unavailable\n")
    replayed = run("--llm-record-mode=none", "-rP")
    replayed.assert_outcomes(passed=1)
    assert len(got(recorded)) == 1 and got(replayed) == got(recorded)


def test_no_secret_in_any_file_or_output(bot, llama_server, monkeypatch, refused):
    """The key set in the environment reaches the server and nothing else."""
    key = "sk-proj-SECRET-d0n7-l34k-m3-0123456789"
    bot.makepyfile(test_a=dedent(
        """
        import pytest
        from pytest_llmmetrics import metrics

        pytestmark = pytest.mark.llm(model="openai:smollm2", system="You are a helpful assistant. Answer in one short sentence.", max_tokens=32)

        def test_capital(llm, llm_metrics, llm_snapshot):
            reply = llm("What is the capital of France?")
            llm_metrics.expect(reply, metrics.contains("Paris"), metrics.cost(prices={"openai:smollm2": (1.0, 2.0)}))
            assert reply == llm_snapshot
        """
    ))
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(bot.path / "summary.md"))
    result = bot.runpytest("--llm-base-url", llama_server.base_url, "--llm-record-mode=all",
                                      "--snapshot-update", "--llm-report-json=report.json", "--junitxml=junit.xml",
                                      "-v", "-rA")
    replay = bot.runpytest("--llm-record-mode=none", "--llm-base-url",
                                      f"http://127.0.0.1:{refused}/v1", "-v", "-rA")
    result.assert_outcomes(passed=1)
    replay.assert_outcomes(passed=1)
    written = [p for p in bot.path.rglob("*") if p.is_file() and p.suffix != ".pyc"]
    names = {p.name for p in written}
    assert {"test_a.llm.json", "test_capital.llm.txt", "report.json", "junit.xml", "summary.md",
            "baseline.json"} <= names
    for path in written:
        assert key not in path.read_text(errors="replace"), path
    for output in (result, replay):
        assert key not in output.stdout.str() + output.stderr.str()


def test_secret_looking_environment_values_are_scrubbed(bot, monkeypatch):
    monkeypatch.setenv("SHOP_API_KEY", "shop-key-0123456789")
    bot.makepyfile(test_a=dedent(
        """
        import pytest

        @pytest.mark.llm(model="py:bot:reply")
        def test_it(llm):
            llm("echo shop-key-0123456789")
        """
    ))
    bot.runpytest("--llm-record-mode=new_episodes").assert_outcomes(passed=1)
    text = (bot.path / RECORDING).read_text()
    assert "shop-key-0123456789" not in text and "<redacted:SHOP_API_KEY>" in text
    # ...and the scrubbed entry still replays: it is found by its key.
    bot.runpytest("--llm-record-mode=none").assert_outcomes(passed=1)


def test_secret_parameters_and_echoed_secrets_stay_out_of_every_file(bot, monkeypatch):
    """A key passed as a parameter, or echoed by the model, reaches no baseline, report, snapshot or recording."""
    pytest.importorskip("syrupy")
    monkeypatch.setenv("SHOP_API_KEY", "shop-key-0123456789")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(bot.path / "summary.md"))
    bot.makepyfile(test_a=dedent(
        """
        import pytest
        from pytest_llmmetrics import metrics

        @pytest.mark.llm(model="py:bot:reply", params={"api_key": "sk-param-secret-0123"})
        def test_it(llm, llm_metrics, llm_snapshot):
            reply = llm("echo shop-key-0123456789")
            llm_metrics.expect(reply, metrics.contains("echo"))
            assert reply == llm_snapshot
        """
    ))
    args = ("--llm-record-mode=new_episodes", "--llm-report-json=report.json", "--junitxml=junit.xml", "-rA")
    first = bot.runpytest("--snapshot-update", *args)
    first.assert_outcomes(passed=1)
    bot.runpytest(*args).assert_outcomes(passed=1)  # the scrubbed snapshot still matches
    files = [p for p in bot.path.rglob("*") if p.is_file() and p.suffix != ".pyc"]
    written = {p.name: p.read_text(errors="replace") for p in files}  # the embedding cache too (hashed keys)
    assert {"test_a.llm.json", "test_it.llm.txt", "baseline.json", "report.json", "junit.xml",
            "summary.md"} <= set(written)
    for name, text in written.items():
        if name not in ("test_a.py", "bot.py"):
            assert "sk-param-secret-0123" not in text and "shop-key-0123456789" not in text, name
    assert "<redacted:SHOP_API_KEY>" in written["test_it.llm.txt"]
    assert '\\"api_key\\": \\"<redacted>\\"' in written["baseline.json"]  # the fingerprint's parameters


def test_concurrent_samples_are_recorded_and_replayed(bot, refused):
    bot.makepyfile(test_a=dedent(
        """
        import pytest

        @pytest.mark.llm(model="openai:m", seed=5)
        def test_it(llm):
            print("GOT", [r.text for r in llm.sample("Name a colour.", n=4, temperature=0.9)])
        """
    ))
    with FaultServer(default=("delay", 0.05, "Blue.")) as server:
        bot.runpytest("--llm-base-url", server.base_url, "--llm-record-mode=all").assert_outcomes(passed=1)
    assert sorted(e["params"]["seed"] for e in entries(bot).values()) == [5, 6, 7, 8]
    replay = bot.runpytest("--llm-base-url", f"http://127.0.0.1:{refused}/v1",
                                      "--llm-record-mode=none", "-s")
    replay.assert_outcomes(passed=1)
    assert got(replay) == ["['Blue.', 'Blue.', 'Blue.', 'Blue.']"]


# --- merge(): the rules of the record modes, without a pytest run ---------------------------------

def old_entry(key: str, test: str, *texts: str) -> dict:
    """An entry as `load` gives it: replies in a list."""
    return {"key": key, "test": test, "model": "m", "params": {}, "messages": [{"role": "user", "content": key}],
            "replies": [{"text": t, "latency_s": 0.5, "prompt_tokens": 1, "completion_tokens": 1,
                         "finish_reason": "stop"} for t in texts]}


def recorded(key: str, test: str, episodes: dict[int, str]) -> dict:
    """An entry as tests record it: replies by episode index, in the order they came."""
    entry = old_entry(key, test)
    entry["replies"] = {i: {"text": t, "latency_s": 0.1, "prompt_tokens": 2, "completion_tokens": 2,
                            "finish_reason": "stop"} for i, t in episodes.items()}
    return entry


def texts(entries: dict) -> dict[str, list[str]]:
    return {key: [r["text"] for r in e["replies"]] for key, e in entries.items()}


@pytest.mark.parametrize("mode", ["once", "new_episodes", "all"])
def test_merge_into_a_new_file_records_every_episode_in_order(mode):
    new = {"k1": recorded("k1", "t::a", {2: "c", 0: "a", 1: "b"}), "k2": recorded("k2", "t::b", {0: "x"})}
    merged = merge({}, new, {"t::a", "t::b"} if mode == "all" else set(), mode)
    assert texts(merged.entries) == {"k1": ["a", "b", "c"], "k2": ["x"]}
    assert (merged.added, merged.removed, merged.changed) == (4, 0, True)
    assert merged.entries["k1"]["test"] == "t::a" and merged.entries["k1"]["replies"][0]["latency_s"] == 0.1


@pytest.mark.parametrize("mode", ["once", "new_episodes"])
def test_merge_without_all_keeps_recorded_episodes_and_adds_those_past_their_end(mode):
    old = {"k1": old_entry("k1", "t::a", "edited by hand", "b")}
    new = {"k1": recorded("k1", "t::a", {3: "d", 2: "c"}), "k2": recorded("k2", "t::a", {0: "x"})}
    merged = merge(old, new, set(), mode)
    assert texts(merged.entries) == {"k1": ["edited by hand", "b", "c", "d"], "k2": ["x"]}
    assert (merged.added, merged.removed, merged.changed) == (3, 0, True)


def test_merge_with_new_episodes_never_removes():
    old = {"k1": old_entry("k1", "t::a", "a"), "k2": old_entry("k2", "t::a", "b")}
    merged = merge(old, {"k3": recorded("k3", "t::a", {0: "c"})}, {"t::a"}, "new_episodes")
    assert texts(merged.entries) == {"k1": ["a"], "k2": ["b"], "k3": ["c"]}
    assert (merged.added, merged.removed) == (1, 0)


def test_merge_with_all_replaces_what_a_test_that_ran_recorded():
    old = {"k1": old_entry("k1", "t::a", "edited by hand", "b", "c")}
    merged = merge(old, {"k1": recorded("k1", "t::a", {1: "y", 0: "x"})}, {"t::a"}, "all")
    assert texts(merged.entries) == {"k1": ["x", "y"]}  # the third episode is no longer asked for
    assert merged.entries["k1"]["replies"][0]["latency_s"] == 0.1
    assert (merged.added, merged.removed, merged.changed) == (2, 0, True)


def test_merge_with_all_removes_requests_a_test_that_ran_no_longer_sends():
    old = {"gone": old_entry("gone", "t::a", "a"), "kept": old_entry("kept", "t::b", "b"),
           "other": old_entry("other", "t::c", "c")}
    # t::a sends a reworded request; t::b ran and sends nothing any more; t::c did not run (-k).
    merged = merge(old, {"reworded": recorded("reworded", "t::a", {0: "a2"})}, {"t::a", "t::b"}, "all")
    assert texts(merged.entries) == {"other": ["c"], "reworded": ["a2"]}
    assert (merged.added, merged.removed, merged.changed) == (1, 2, True)


def test_merge_with_all_keeps_a_request_that_another_test_sent_again():
    """Keys do not include the test: a request t::a stopped sending but t::b sends stays, t::b's now."""
    old = {"shared": old_entry("shared", "t::a", "old")}
    merged = merge(old, {"shared": recorded("shared", "t::b", {0: "new"})}, {"t::a", "t::b"}, "all")
    assert texts(merged.entries) == {"shared": ["new"]} and merged.entries["shared"]["test"] == "t::b"
    assert (merged.added, merged.removed) == (1, 0)


def test_merge_with_all_keeps_the_entries_of_tests_that_did_not_run():
    old = {"k1": old_entry("k1", "t::a", "a"), "k2": old_entry("k2", "t::b", "b")}
    merged = merge(old, {"k3": recorded("k3", "t::c", {0: "c"})}, {"t::c"}, "all")
    assert texts(merged.entries) == {"k1": ["a"], "k2": ["b"], "k3": ["c"]}
    assert (merged.added, merged.removed) == (1, 0)


@pytest.mark.parametrize(("mode", "ran"), [("all", {"t::b"}), ("all", set()), ("new_episodes", {"t::a"}),
                                           ("once", set())])
def test_merge_that_records_and_removes_nothing_leaves_the_file_unwritten(mode, ran):
    old = {"k1": old_entry("k1", "t::a", "a")}
    merged = merge(old, {}, ran, mode)
    assert (merged.added, merged.removed, merged.changed) == (0, 0, False)
    assert merged.entries == old


def test_merge_of_episodes_already_in_the_file_still_writes_it():
    """What the file holds wins, and the file is written all the same (as before merge() was a function)."""
    old = {"k1": old_entry("k1", "t::a", "a", "b")}
    merged = merge(old, {"k1": recorded("k1", "t::a", {1: "other"})}, set(), "new_episodes")
    assert texts(merged.entries) == {"k1": ["a", "b"]}
    assert (merged.added, merged.removed, merged.changed) == (0, 0, True)


@pytest.mark.parametrize("mode", ["once", "new_episodes", "all"])
def test_merge_leaves_its_inputs_as_they_are_and_gives_what_the_file_holds(mode, tmp_path):
    old = {"k1": old_entry("k1", "t::a", "a"), "k2": old_entry("k2", "t::a", "b")}
    new = {"k1": recorded("k1", "t::a", {0: "x", 1: "y"}), "k3": recorded("k3", "t::a", {0: "z"})}
    before = copy.deepcopy((old, new))
    merged = merge(old, new, {"t::a"}, mode)
    assert (old, new) == before
    path = tmp_path / "r.llm.json"
    path.write_text(dump(merged.entries))
    assert load(path) == merged.entries
