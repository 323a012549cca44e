"""Semantic snapshots and similarity with the real packaged all-MiniLM-L6-v2 (serial and -n 2)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import pytest
from conftest import dedent

pytest.importorskip("sentence_transformers")
pytest.importorskip("syrupy")

SNAPSHOT_TESTS = dedent(
    """
    import os
    import pytest

    REPLIES = {
        "original": "You can return any item within 30 days of delivery for a full refund.",
        "paraphrase": "Items can be returned for a full refund up to 30 days after delivery.",
        "unrelated": "Our kettles come in red, blue and a very fetching shade of green.",
    }

    def reply():
        return REPLIES[os.environ.get("REPLY", "original")]

    def test_refund(llm_snapshot):
        assert reply() == llm_snapshot

    def test_refund_strict(llm_snapshot):
        assert reply() == llm_snapshot(threshold=float(os.environ.get("THRESHOLD", "0.99")))
    """
)


@pytest.fixture
def snap(bot, monkeypatch):
    bot.makepyfile(test_snap=SNAPSHOT_TESTS)
    monkeypatch.setenv("REPLY", "original")
    return bot


def snapshot_file(pytester, name="test_refund"):
    return pytester.path / "__snapshots__" / "test_snap" / f"{name}.llm.txt"


def test_update_flow_then_paraphrase_passes_and_unrelated_fails(run, snap, monkeypatch):
    result = run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*Snapshot 'test_refund' does not exist!*"])

    result = run("--snapshot-update")
    result.assert_outcomes(passed=2)
    text = snapshot_file(snap).read_text()
    assert text == (
        "embedding-model: sentence-transformers/all-MiniLM-L6-v2\n---\n"
        "You can return any item within 30 days of delivery for a full refund.\n"
    )

    monkeypatch.setenv("REPLY", "paraphrase")
    result = run()
    result.assert_outcomes(passed=1, failed=1)  # the strict 0.99 threshold catches the rewording
    result.stdout.fnmatch_lines(["*similarity 0.9* < threshold 0.990 (embedding model sentence-transformers/all-MiniLM-L6-v2)"])

    monkeypatch.setenv("REPLY", "unrelated")
    monkeypatch.setenv("THRESHOLD", "0.3")
    result = run()
    result.assert_outcomes(failed=2)  # unrelated text scores near 0: even a loose 0.3 catches it
    result.stdout.fnmatch_lines(
        [
            "*similarity *0.0* < threshold 0.800 (embedding model sentence-transformers/all-MiniLM-L6-v2)",
            "*--- stored",
            "*+++ reply",
            "*-You can return any item within 30 days of delivery for a full refund.",
            "*+Our kettles come in red, blue and a very fetching shade of green.",
        ]
    )


def test_snapshot_update_refreshes_a_failing_snapshot_only(snap, monkeypatch):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    before = snapshot_file(snap).stat().st_mtime_ns
    monkeypatch.setenv("REPLY", "paraphrase")
    result = snap.runpytest("--snapshot-update")
    result.assert_outcomes(passed=2)
    assert snapshot_file(snap).stat().st_mtime_ns == before  # close enough: the reference is kept
    assert "paraphrase" not in snapshot_file(snap).read_text()
    assert "Items can be returned" in snapshot_file(snap, "test_refund_strict").read_text()


def test_unused_snapshots_are_reported_and_removed(snap):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    (snap.path / "test_snap.py").write_text(SNAPSHOT_TESTS.replace("def test_refund_strict", "def _gone"))
    result = snap.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
    result = snap.runpytest("--snapshot-update")
    result.stdout.fnmatch_lines(["*1 unused snapshot deleted*"])
    assert not snapshot_file(snap, "test_refund_strict").exists()
    assert snapshot_file(snap).exists()


TWO_ASSERTS = dedent(
    """
    import os

    REPLY = os.environ.get("REPLY", "You can return any item within 30 days of delivery for a full refund.")

    def test_loose_then_default(llm_snapshot):
        assert REPLY == llm_snapshot(threshold=0.5)
        assert REPLY == llm_snapshot

    def test_both_loose(llm_metrics, llm_snapshot):
        assert REPLY == llm_snapshot(threshold=0.5)
        assert REPLY == llm_snapshot(threshold=0.5)
        first, second = (llm_metrics.records[name].values for name in ("similarity[snapshot]", "similarity[snapshot.1]"))
        if "REPLY" in os.environ:
            assert len(first) == 1 and 0.5 < first[0] < 0.8 and second == first
        else:
            assert first == second == [1.0]  # just stored
    """
)


def test_a_threshold_holds_for_its_own_assert_only(run, bot, monkeypatch):
    bot.makepyfile(test_two=TWO_ASSERTS)
    run("--snapshot-update").assert_outcomes(passed=2)
    folder = bot.path / "__snapshots__" / "test_two"
    assert sorted(p.name for p in folder.iterdir()) == [
        "test_both_loose.1.llm.txt", "test_both_loose.llm.txt",
        "test_loose_then_default.1.llm.txt", "test_loose_then_default.llm.txt"]
    monkeypatch.setenv("REPLY", "Refunds are possible.")  # similarity ~0.6: passes 0.5, fails the default 0.8
    result = run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        ">       assert REPLY == llm_snapshot",  # the second assert failed, at the default threshold
        "*similarity 0.* < threshold 0.800 (embedding model *",
        "*1 snapshot failed. 3 snapshots passed.*",
    ])


def test_the_extension_works_with_syrupys_own_fixture(bot, monkeypatch):
    bot.makepyfile(test_plain=dedent(
        """
        import os
        import pytest
        from pytest_llmmetrics.semantic.snapshot import SemanticSnapshotExtension

        @pytest.fixture
        def snapshot(snapshot):
            return snapshot.use_extension(SemanticSnapshotExtension)

        def test_plain(snapshot):
            assert os.environ.get("REPLY", "You can return any item within 30 days.") == snapshot
        """
    ))
    bot.runpytest("--snapshot-update").assert_outcomes(passed=1)
    assert (bot.path / "__snapshots__" / "test_plain" / "test_plain.llm.txt").read_text().endswith(
        "---\nYou can return any item within 30 days.\n")
    bot.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("REPLY", "Our kettles come in red, blue and green.")
    result = bot.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*similarity * < threshold 0.800 (embedding model *"])


def test_in_process_runs_keep_their_snapshot_state_apart(pytester, request):
    from pytest_llmmetrics.semantic.snapshot import RUN_KEY

    pytester.makepyfile(test_outer=dedent(
        """
        from pytest_llmmetrics.semantic.snapshot import RUN_KEY

        def test_a_runs_pytest_inside(pytester):
            pytester.makepyfile(test_inner="def test_x(llm_snapshot):\\n    assert 'We ship in two days.' == llm_snapshot\\n")
            pytester.runpytest("--snapshot-update").assert_outcomes(passed=1)
            pytester.runpytest().assert_outcomes(passed=1)

        def test_b_sees_its_own_run(request, llm_snapshot):
            run = request.config.stash[RUN_KEY]
            assert sorted(name for _, name in run.selected) == ["test_b_sees_its_own_run"]
            assert "You can return any item within 30 days." == llm_snapshot
        """
    ))
    pytester.runpytest("-p", "pytester", "--snapshot-update").assert_outcomes(passed=2)
    pytester.runpytest("-p", "pytester").assert_outcomes(passed=2)
    assert RUN_KEY not in request.config.stash  # nor did they leak into this run


def test_changed_embedding_model_needs_a_rebaseline(run, snap):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    path = snapshot_file(snap)
    path.write_text(path.read_text().replace("sentence-transformers/all-MiniLM-L6-v2", "acme/other-embedder"))
    result = run("-k", "not strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*re-baseline needed: this snapshot was compared with embedding model 'acme/other-embedder', "
            "this run uses 'sentence-transformers/all-MiniLM-L6-v2'.",
            "*Run pytest --snapshot-update to re-record the snapshot*",
        ]
    )
    assert "similarity 1.000" not in result.stdout.str()  # no verdict from the wrong model
    run("-k", "not strict", "--snapshot-update").assert_outcomes(passed=1)
    assert path.read_text().startswith("embedding-model: sentence-transformers/all-MiniLM-L6-v2\n")


def test_hand_broken_snapshot_is_reported_not_overwritten(snap):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    path = snapshot_file(snap)
    path.write_text("You can return any item within 30 days.\n")
    result = snap.runpytest("-k", "not strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{path}: line 1: not a pytest-llmmetrics snapshot*"])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    assert path.read_text() == "You can return any item within 30 days.\n"


def test_samples_compared_in_one_batch(run, bot):
    bot.makepyfile(
        test_samples=dedent(
            """
            SAMPLES = [
                "Returns are accepted within 30 days.",
                "You can return items within 30 days.",
                "Items may be returned for 30 days.",
            ]

            def test_samples(llm_snapshot):
                assert SAMPLES == llm_snapshot

            def test_samples_drifted(llm_snapshot):
                assert SAMPLES[:2] + ["Our kettles are red."] == llm_snapshot(threshold=0.85)
            """
        )
    )
    bot.runpytest("--snapshot-update").assert_outcomes(passed=2)
    path = bot.path / "__snapshots__" / "test_samples" / "test_samples.llm.txt"
    assert "samples: 3 (stored: the most central sample)" in path.read_text()
    result = run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*mean similarity 0.* < threshold 0.850 over 3 samples (* of 3 at or above it, lowest *",
            "*+++ least similar sample",
            "*+Our kettles are red.",
        ]
    )


def test_similarity_check_and_recorded_metric(run, bot):
    bot.makepyfile(
        test_sim=dedent(
            """
            from pytest_llmmetrics import metrics

            def test_sim(llm_metrics, llm_snapshot):
                replies = ["Paris is the capital of France.", "The French capital is Paris."]
                llm_metrics.expect(replies, metrics.similarity("France's capital is Paris.", min=0.8))
                record = llm_metrics.records["similarity[France's capital is Paris.]"]
                assert record.n == 2 and record.passed == 2 and 0.8 < record.mean <= 1.0
                assert replies[0] == llm_snapshot
                assert llm_metrics.records["similarity[snapshot]"].values == [1.0]  # just recorded

            def test_sim_miss(llm_metrics):
                llm_metrics.expect("Bananas are yellow.", metrics.similarity("France's capital is Paris."))
            """
        )
    )
    result = run("--snapshot-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([re.escape("- similarity[France's capital is Paris.] = ") + r"-?0\.\d+, needs >= 0\.8"])


def test_corrupt_cache_is_dropped_and_recomputed(snap, monkeypatch):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    monkeypatch.setenv("REPLY", "paraphrase")  # identical text needs no encoding; a paraphrase does
    snap.runpytest("-k", "not strict").assert_outcomes(passed=1)
    cache = snap.path / ".llmmetrics" / "cache" / "embeddings.sqlite3"
    assert cache.is_file() and (cache.parent / ".gitignore").read_text().strip().endswith("*")
    # A broken entry: a vector blob of the wrong size.
    with sqlite3.connect(cache) as db:
        assert db.execute("UPDATE embedding SET vec = x'0000'").rowcount >= 1
        db.execute("DELETE FROM similarity")
    result = snap.runpytest("-k", "not strict", "-W", "default")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*dropped * broken entries; they are recomputed*"])
    # A broken file.
    for suffix in ("-wal", "-shm"):
        (cache.parent / (cache.name + suffix)).unlink(missing_ok=True)
    cache.write_bytes(b"this is not a database" * 100)
    result = snap.runpytest("-k", "not strict", "-W", "default")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*embedding cache * is unreadable (*); starting a new one*"])
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM embedding").fetchone()[0] >= 1


def test_fully_cached_run_imports_no_torch(snap, monkeypatch):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    monkeypatch.setenv("REPLY", "paraphrase")
    snap.runpytest().assert_outcomes(passed=1, failed=1)  # fills the similarity cache
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--capture=no"],
        cwd=snap.path, capture_output=True, text=True, timeout=300,
    )
    assert "1 failed, 1 passed" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "pytest_llmmetrics.semantic.snapshot" in imported
    assert sorted(m for m in imported if m.split(".")[0] in ("torch", "transformers", "sentence_transformers")) == []


def test_long_text_truncation_is_reported(bot):
    bot.makepyfile(
        test_long=dedent(
            """
            from pytest_llmmetrics import metrics

            def test_long(llm_metrics):
                text = "refund policy details " * 200
                llm_metrics.expect(text, metrics.similarity(text))
                llm_metrics.expect(text + " extra", metrics.similarity(text, min=0.5))
            """
        )
    )
    result = bot.runpytest("-W", "default")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*reads only the first 256 word pieces; the rest of this text is ignored*"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--llm-embedding-model", "/nowhere/model"], "cannot load the embedding model '/nowhere/model' (FileNotFoundError: Path /nowhere/model not found)"),
        (["--llm-device", "cuda:7"], "--llm-device cuda:7: "),
    ],
)
def test_unusable_model_or_device_fails_cleanly(bot, args, expected):
    bot.makepyfile(test_a=dedent(
        """
        from pytest_llmmetrics import metrics

        def test_a(llm_metrics):
            llm_metrics.expect("a reply", metrics.similarity("a reference"))
        """
    ))
    result = bot.runpytest(*args)
    result.assert_outcomes(failed=1)
    assert expected in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()


def test_single_file_snapshot_folders_are_not_collected(pytester):
    pytester.makepyfile(test_snap="def test_a():\n    pass\n")
    folder = pytester.path / "__snapshots__" / "test_snap"
    folder.mkdir(parents=True)
    (folder / "test_trap.py").write_text("def test_trap():\n    raise AssertionError\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:llmmetrics").assert_outcomes(passed=1, failed=1)


# --- files a user or a merge broke ---------------------------------------------------

def clean(result: pytest.RunResult) -> str:
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output
    return output


def test_snapshot_that_is_not_utf8_is_an_error_and_left_untouched(run, snap):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    path = snapshot_file(snap)
    broken = b"embedding-model: sentence-transformers/all-MiniLM-L6-v2\n---\nCaf\xe9 au lait, 30 days.\n"
    path.write_bytes(broken)  # saved as Latin-1 by an editor
    for args in ([], ["--snapshot-update"]):
        result = run("-k", "not strict", *args)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([(f"*{path}: line 3: not UTF-8 text (byte 0xe9 at offset 63). It is not a "
                                      "pytest-llmmetrics snapshot and was left untouched*")])
        clean(result)
        assert path.read_bytes() == broken


PARAMETRISED = dedent(
    """
    import pytest

    REPLIES = {
        "a/b": "You can return any item within 30 days of delivery for a full refund.",
        "ab": "Our kettles come in red, blue and a very fetching shade of green.",
        "a:b": "We ship every order within two working days.",
    }

    @pytest.mark.parametrize("key", list(REPLIES), ids=list(REPLIES))
    def test_path(key, llm_snapshot):
        assert REPLIES[key] == llm_snapshot(threshold=0.99)
    """
)


def test_ids_that_sanitise_alike_get_their_own_snapshot_files(run, bot):
    bot.makepyfile(test_ids=PARAMETRISED)
    result = run("--snapshot-update")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*3 snapshots generated.*"])
    folder = bot.path / "__snapshots__" / "test_ids"
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 3 and "test_path[ab].llm.txt" in files  # a clean id keeps syrupy's name
    assert all(re.fullmatch(r"test_path\[ab\](~[0-9a-f]{8})?\.llm\.txt", name) for name in files)
    texts = {(folder / name).read_text().split("---\n", 1)[1] for name in files}
    assert len(texts) == 3  # each id kept its own reply
    result = run()
    result.assert_outcomes(passed=3)
    assert "unused" not in clean(result)
    result = run("--snapshot-update")
    result.stdout.fnmatch_lines(["*3 snapshots passed.*"])
    assert "deleted" not in clean(result) and sorted(p.name for p in folder.iterdir()) == files


KEEPER = dedent(
    """
    import os
    import pytest

    pytestmark = pytest.mark.llm(model="py:flaky:reply")

    @pytest.fixture
    def server():
        if os.environ.get("DOWN"):
            raise ConnectionError("the model server is down")

    def test_call_fails(llm, llm_snapshot):
        assert llm("What is your refund policy?") == llm_snapshot

    def test_setup_errors(server, llm, llm_snapshot):
        assert llm("How fast do you ship?") == llm_snapshot

    def test_second_assert_missed(llm, llm_snapshot):
        assert llm("What is your refund policy?") == llm_snapshot
        assert llm("How fast do you ship?") == llm_snapshot

    def test_passes(llm_snapshot):
        assert "Our kettles come in red." == llm_snapshot
    """
)
FLAKY = dedent(
    """
    import os

    CALLS = [0]

    def reply(messages, **params):
        CALLS[0] += 1
        if os.environ.get("DOWN") and CALLS[0] > int(os.environ.get("DOWN_AFTER", "0")):
            raise ConnectionError("the model server is down")
        if "refund" in messages[-1]["content"]:
            return "You can return any item within 30 days of delivery for a full refund."
        return "We ship every order within two working days."
    """
)


def test_snapshot_update_keeps_the_snapshots_of_tests_that_failed_before_asserting(run, bot, monkeypatch):
    bot.makepyfile(test_keep=KEEPER, flaky=FLAKY)
    run("--snapshot-update").assert_outcomes(passed=4)
    folder = bot.path / "__snapshots__" / "test_keep"
    stored = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sorted(stored) == ["test_call_fails.llm.txt", "test_passes.llm.txt", "test_second_assert_missed.1.llm.txt",
                              "test_second_assert_missed.llm.txt", "test_setup_errors.llm.txt"]
    # A test that is gone: its snapshot is unused, and only that one.
    bot.makepyfile(test_keep=KEEPER.replace("def test_passes", "def _gone"), flaky=FLAKY)
    monkeypatch.setenv("DOWN", "1")
    result = run()
    result.assert_outcomes(failed=2, errors=1)
    result.stdout.fnmatch_lines(["*1 snapshot unused.*", "*the model server is down*"])
    result = run("--snapshot-update")
    result.assert_outcomes(failed=2, errors=1)
    result.stdout.fnmatch_lines(["*1 unused snapshot deleted.*"])
    clean(result)
    left = {p.name: p.read_bytes() for p in folder.iterdir()}
    del stored["test_passes.llm.txt"]
    assert left == stored  # the tests that failed before their assert kept their snapshots, untouched
    # Down after the first call: the first assert passed, the second was never reached.
    monkeypatch.setenv("DOWN_AFTER", "1")
    result = run("--snapshot-update", "-k", "second_assert")
    result.assert_outcomes(failed=1)
    assert "deleted" not in clean(result)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == stored


EXACT = dedent(
    """
    import pytest

    REPLIES = {
        "crlf": "Line one.\\r\\nLine two.\\r\\n",
        "lone-cr": "Progress 50%\\rProgress 100%",
        "trailing": "Done.   \\n\\n\\n",
        "dashes": "---\\ntitle: not a header\\n---\\nbody",
        "unicode": "Gr\\u00fc\\u00dfe \\U0001f44b\\u2028na\\u00efve \\u00a0",
        "empty": "",
    }

    @pytest.mark.parametrize("kind", list(REPLIES), ids=list(REPLIES))
    def test_exact(kind, llm_snapshot):
        assert REPLIES[kind] == llm_snapshot(threshold=1.0)
    """
)


def test_snapshots_round_trip_any_text_exactly(run, bot):
    bot.makepyfile(test_exact=EXACT)
    run("--snapshot-update").assert_outcomes(passed=6)
    folder = bot.path / "__snapshots__" / "test_exact"
    header = b"embedding-model: sentence-transformers/all-MiniLM-L6-v2\n---\n"
    assert (folder / "test_exact[crlf].llm.txt").read_bytes() == header + b"Line one.\r\nLine two.\r\n\n"
    assert (folder / "test_exact[lone-cr].llm.txt").read_bytes() == header + b"Progress 50%\rProgress 100%\n"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    result = run()
    result.assert_outcomes(passed=6)  # identical text scores exactly 1.0; a changed one would not
    result = run("--snapshot-update")
    result.stdout.fnmatch_lines(["*6 snapshots passed.*"])
    assert not re.search(r"\d+ snapshots? updated", clean(result))
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_failure_diff_shows_the_replies_own_lines(run, bot, monkeypatch):
    bot.makepyfile(test_diff=dedent(
        """
        import os

        def test_diff(llm_snapshot):
            reply = os.environ.get("REPLY", "You can return any item within 30 days. Keep your receipt.")
            assert reply == llm_snapshot
        """
    ))
    run("--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.setenv("REPLY", "Our kettles come in red. And blue.\rAnd green.")
    result = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*@@ -1 +1 @@",
        "*-You can return any item within 30 days. Keep your receipt.",
        "*+Our kettles come in red. And blue.\\rAnd green.",
    ])
    assert "-Keep your receipt." not in clean(result)  # no line break the texts do not have


def test_llm_snapshot_without_syrupy_says_to_enable_it(run, bot):
    bot.makepyfile(test_a=dedent(
        """
        def test_snap(llm_snapshot):
            assert "x" == llm_snapshot

        def test_plain():
            pass
        """
    ))
    result = run("-p", "no:syrupy")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([("*test_a.py::test_snap: llm_snapshot needs the syrupy pytest plugin, and this run "
                                  "switched it off (-p no:syrupy *). Remove -p no:syrupy to run snapshot tests*")])
    assert "fixture 'snapshot' not found" not in clean(result)


@pytest.mark.parametrize("obstacle", ["folder-in-the-way", "file-in-the-way", "read-only-folder"])
def test_unusable_cache_path_is_a_warning_and_the_run_goes_on_uncached(run, bot, obstacle):
    if obstacle == "read-only-folder" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    bot.makepyfile(test_a=dedent(
        """
        from pytest_llmmetrics import metrics

        def test_a(llm_metrics):
            llm_metrics.expect("Paris is the capital of France.", metrics.similarity("France's capital is Paris."))
        """
    ))
    cache = bot.path / ".llmmetrics" / "cache"
    if obstacle == "folder-in-the-way":
        (cache / "embeddings.sqlite3").mkdir(parents=True)
    elif obstacle == "file-in-the-way":
        cache.parent.mkdir()
        cache.write_text("a file where the cache folder should be")
    else:
        cache.mkdir(parents=True)
        cache.chmod(0o555)
    before = sorted(str(p.relative_to(bot.path)) for p in (bot.path / ".llmmetrics").rglob("*"))
    result = run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([("*embedding cache *embeddings.sqlite3 cannot be used (*); this run goes on "
                                  "without it. Make its folder writable, remove what is in the way*")])
    clean(result)
    after = sorted(str(p.relative_to(bot.path)) for p in (bot.path / ".llmmetrics").rglob("*")
                   if p.parent.name != "history")
    if obstacle == "folder-in-the-way":
        before.append(".llmmetrics/cache/.gitignore")  # the folder itself is usable
    assert after == sorted(set(before) | {".llmmetrics/history"})
    if obstacle == "folder-in-the-way":
        assert list((cache / "embeddings.sqlite3").iterdir()) == []


NOISE = dedent(
    """
    import os
    from pytest_llmmetrics import metrics

    REFERENCE = "You can return any item within 30 days of delivery for a full refund."
    REPLIES = [
        os.environ.get("FIRST", "Items can be returned for a full refund up to 30 days after delivery."),
        "Refunds are given for returns within thirty days.",
        "Send it back within a month and we refund you.",
    ]

    def test_samples(llm_metrics):
        llm_metrics.expect(REPLIES, metrics.similarity(REFERENCE, min=0.1))

    def test_single(llm_metrics):
        llm_metrics.expect(REPLIES[0], metrics.similarity(REFERENCE, min=0.1))
    """
)


def test_batching_noise_in_similarities_never_moves_a_verdict(run, bot, monkeypatch):
    """A full run encodes in batches; one test alone with a cold cache does not: ~1e-7 apart, never a verdict."""
    import shutil

    bot.makepyfile(test_noise=NOISE)
    run("--llm-baseline-update").assert_outcomes(passed=2)
    shutil.rmtree(bot.path / ".llmmetrics" / "cache")
    result = run("test_noise.py::test_single", "--llm-fail-on-regression", "-v")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_single*similarity*unchanged*",
                                 "*1 tests, 1 metrics: 0 regressed, 1 unchanged*"])
    # A real drop of the meaning still shows.
    monkeypatch.setenv("FIRST", "Items can be returned up to 30 days after delivery, but not for a refund.")
    result = run("test_noise.py::test_single", "--llm-fail-on-regression")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*test_single*similarity*regressed*"])


def test_a_directory_where_a_snapshot_belongs_is_a_clear_failure(snap):
    snap.runpytest("--snapshot-update").assert_outcomes(passed=2)
    path = snapshot_file(snap)
    path.unlink()
    path.mkdir()
    result = snap.runpytest("-k", "not strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{path}: a directory is where this file belongs; move it away*"])
    assert "Traceback" not in result.stdout.str() and "IsADirectoryError" not in result.stdout.str()
    assert path.is_dir()


def test_bad_snapshot_input_is_a_clear_failure_not_a_traceback(bot):
    bot.makepyfile(test_bad=dedent(
        """
        def test_typo(llm_snapshot):
            assert "The sky is blue." == llm_snapshot(treshold=0.9)

        def test_none(llm_snapshot):
            assert None == llm_snapshot
        """))
    result = bot.runpytest("-p", "no:xdist", "--snapshot-update")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*llm_snapshot(): unknown argument 'treshold' (did you mean 'threshold'?); it takes threshold, *",
        "*llm_snapshot compares a Response, a str or a non-empty list of them, got NoneType*",
    ])
    assert "Traceback" not in result.stdout.str() and not (bot.path / "__snapshots__" / "test_bad").exists()


def test_a_model_that_cannot_load_never_rewrites_snapshots(snap):
    snap.runpytest("-p", "no:xdist", "--snapshot-update").assert_outcomes(passed=2)
    before = snapshot_file(snap).read_text()
    result = snap.runpytest("-p", "no:xdist", "--snapshot-update", "--llm-embedding-model", "/no/such/model")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*cannot load the embedding model '/no/such/model'*"])
    assert snapshot_file(snap).read_text() == before  # not re-headed under the typo
    snap.runpytest("-p", "no:xdist").assert_outcomes(passed=2)
