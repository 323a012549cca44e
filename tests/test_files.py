"""Files the plugin writes: atomic, exact bytes, and the permissions the user's umask gives."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import dedent

from pytest_llmmetrics.errors import ConfigError
from pytest_llmmetrics.files import atomic_write_text, create_file, read_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """``os.umask`` for this test only: the process's umask is restored after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_write_and_create_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    atomic_write_text(tmp_path / "a" / "new.txt", "x")
    create_file(tmp_path / "empty")
    assert mode(tmp_path / "a" / "new.txt") == 0o666 & ~mask
    assert mode(tmp_path / "empty") == 0o666 & ~mask
    # Rewriting replaces the file: a file an old version wrote 0600 gets the umask's mode too.
    old = tmp_path / "old.txt"
    old.write_text("old")
    old.chmod(0o600)
    atomic_write_text(old, "new")
    assert mode(old) == 0o666 & ~mask and old.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty", "old.txt"]  # no temp file left


def test_create_file_leaves_an_existing_file_alone(tmp_path):
    path = tmp_path / "db"
    path.write_bytes(b"data")
    create_file(path)
    assert path.read_bytes() == b"data"


def test_written_and_read_back_byte_for_byte(tmp_path):
    text = "crlf\r\nlone cr\r trailing  \n\n\u2028 unicode \u00e9\U0001f600\n"
    path = tmp_path / "f.txt"
    atomic_write_text(path, text)
    assert path.read_bytes() == text.encode("utf-8")
    assert read_text(path, "Fix it.") == text


def test_read_text_refuses_what_is_not_utf8_naming_file_and_line(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"one\ntwo caf\xe9\n")
    with pytest.raises(ConfigError, match=r"f\.txt: line 2: not UTF-8 text \(byte 0xe9 at offset 11\)\. Fix it\.$"):
        read_text(path, "Fix it.")
    assert path.read_bytes() == b"one\ntwo caf\xe9\n"


# Every file the plugin writes, in one run: snapshot, recording, baseline, run history,
# embedding cache (SQLite), JSON report and the GitHub step summary.
WRITES_EVERYTHING = dedent(
    """
    import pytest
    from pytest_llmmetrics import metrics

    pytestmark = pytest.mark.llm(model="py:bot:reply")

    def test_all(llm, llm_metrics, llm_snapshot):
        reply = llm("What is the capital of France?")
        llm_metrics.expect(reply, metrics.similarity("Paris is the capital city of France."))
        assert reply == llm_snapshot
    """
)
# pytest in a child process with the umask given first; workers (-n 2) inherit it.
WITH_UMASK = "import os, sys, pytest; os.umask(int(sys.argv[1], 8)); sys.exit(pytest.main(sys.argv[2:]))"


# Not importorskip: pytester drops modules imported during a test, and numpy cannot be imported twice.
@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("syrupy")
                    is None, reason="needs pytest-llmmetrics[semantic]")
@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["umask022", "umask002"])
@pytest.mark.parametrize("mode_", ["serial", "xdist"])
def test_every_written_file_gets_the_umask_permissions(bot, monkeypatch, mask, mode_):
    bot.makepyfile(test_umask=WRITES_EVERYTHING)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(bot.path / "summary.md"))
    extra = ["-n", "2"] if mode_ == "xdist" else ["-p", "no:xdist"]
    result = bot.run(sys.executable, "-c", WITH_UMASK, f"{mask:o}", *extra, "-p", "no:cacheprovider",
                     "--snapshot-update", "--llm-record-mode=all", "--llm-report-json=report.json")
    assert result.ret == 0, result.stdout.str()
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output
    ours = {bot.path / "stdout", bot.path / "stderr"}  # pytester's capture of the child
    written = [p for p in bot.path.rglob("*")
               if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts and p not in ours]
    names = {p.relative_to(bot.path).as_posix() for p in written}
    assert {"__snapshots__/test_umask/test_all.llm.txt", "__recordings__/test_umask.llm.json",
            ".llmmetrics/baseline.json", ".llmmetrics/history/.gitignore", ".llmmetrics/cache/.gitignore",
            ".llmmetrics/cache/embeddings.sqlite3", "report.json", "summary.md"} <= names
    assert any(name.startswith(".llmmetrics/history/") and name.endswith(".json") for name in names)
    wrong = {p.relative_to(bot.path).as_posix(): oct(mode(p)) for p in written if mode(p) != 0o666 & ~mask}
    assert wrong == {}
    folders = [p for p in bot.path.rglob("*") if p.is_dir() and "__pycache__" not in p.parts]
    assert {p.name: oct(mode(p)) for p in folders if mode(p) != 0o777 & ~mask} == {}
