"""Semantic snapshots: a syrupy extension that passes while a reply stays close in meaning.

Each snapshot is one human-readable text file,
``__snapshots__/<test module>/<test name>.llm.txt``: a header naming the
embedding model it was compared with, then the reference text exactly as the
model wrote it (line endings, trailing spaces and all; UTF-8). One file per
snapshot means no two xdist workers ever write the same file.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from pytest_llmmetrics.errors import ConfigError, LLMMetricsError
from pytest_llmmetrics.files import atomic_write_text, read_text
from pytest_llmmetrics.redact import scrub
from pytest_llmmetrics.response import Response
from pytest_llmmetrics.semantic.engine import check_threshold, get_engine

if TYPE_CHECKING:
    from syrupy.data import SnapshotCollection

    from pytest_llmmetrics.llm_metrics import MetricsRecorder

MODEL_FIELD = "embedding-model"
SAMPLES_FIELD = "samples"
SEPARATOR = "---"


@dataclass(frozen=True)
class Stored:
    """A parsed snapshot file."""

    model: str
    text: str
    samples: int | None = None


def render(model: str, text: str, samples: int | None = None) -> str:
    """A snapshot file's text; `parse` gives ``text`` back exactly, whatever it holds."""
    lines = [f"{MODEL_FIELD}: {model}"]
    if samples is not None:
        lines.append(f"{SAMPLES_FIELD}: {samples} (stored: the most central sample)")
    return "\n".join(lines) + f"\n{SEPARATOR}\n{text}\n"


def read(path: str | Path) -> str:
    """A snapshot file's text, exactly as stored; not UTF-8 is a `ConfigError` naming the file."""
    return read_text(path, "It is not a pytest-llmmetrics snapshot and was left untouched: fix its encoding "
                           "(git diff / git checkout it), or delete it and run pytest --snapshot-update to record "
                           "it again")


def parse(data: str, where: str) -> Stored:
    """Strict: a hand-broken file is an error naming the file and line, never silently replaced."""
    again = "Fix the file, or delete it and run pytest --snapshot-update to record it again"
    if data.startswith("\ufeff"):
        raise ConfigError(f"{where}: line 1: the file starts with a byte-order mark (BOM) an editor added; "
                          f"remove it (save as UTF-8 without BOM). {again}")
    head, sep, body = data.partition(f"\n{SEPARATOR}\n")
    if not sep and f"\r\n{SEPARATOR}\r\n" in data:
        raise ConfigError(
            f"{where}: line 1: the file's line endings were changed to CRLF (git's core.autocrlf or an editor), "
            "so its header no longer reads. Snapshots keep the reply's own line endings: add the line "
            "'__snapshots__/** -text' to .gitattributes and check the file out again (git checkout -- FILE). " + again
        )
    if not sep:
        raise ConfigError(
            f"{where}: line 1: not a pytest-llmmetrics snapshot (no '{SEPARATOR}' line after the header). "
            "Fix the file, or delete it and run pytest --snapshot-update to record it again"
        )
    fields: dict[str, str] = {}
    for lineno, line in enumerate(head.split("\n"), start=1):
        key, colon, value = line.partition(":")
        if not colon:
            raise ConfigError(f"{where}: line {lineno}: expected 'name: value' in the header, got {line!r}")
        fields[key.strip()] = value.strip()
    if not fields.get(MODEL_FIELD):
        raise ConfigError(f"{where}: line 1: the header has no '{MODEL_FIELD}:' field")
    samples_text = fields.get(SAMPLES_FIELD, "").split(" ", 1)[0]
    return Stored(fields[MODEL_FIELD], body[:-1] if body.endswith("\n") else body,
                  int(samples_text) if samples_text.isascii() and samples_text.isdigit() else None)


def texts_of(data: Any) -> list[str]:
    if isinstance(data, (str, Response)):
        return [str(data)]
    if isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, Response)) for d in data):
        return [str(d) for d in data]
    raise TypeError(
        f"llm_snapshot compares a Response, a str or a non-empty list of them, got {type(data).__name__}"
    )


@dataclass(frozen=True)
class Verdict:
    """What one comparison found; the failure message and the recorded metric come from it."""

    model: str
    threshold: float
    similarity: float = math.nan  # the mean over samples
    lowest: float = math.nan
    n: int = 1
    passed: int = 0
    stored_model: str = ""
    worst: str = ""  # the sample least similar to the stored text

    @property
    def rebaseline(self) -> bool:
        return self.stored_model != self.model

    def lines(self) -> list[str]:
        if self.rebaseline:
            return [
                f"re-baseline needed: this snapshot was compared with embedding model {self.stored_model!r}, "
                f"this run uses {self.model!r}.",
                "A similarity threshold only holds for the model it was tuned on, so no verdict is given.",
                "Run pytest --snapshot-update to re-record the snapshot (and check its threshold).",
            ]
        if self.n == 1:
            head = f"similarity {self.similarity:.3f} < threshold {self.threshold:.3f}"
        else:
            head = (f"mean similarity {self.similarity:.3f} < threshold {self.threshold:.3f} over {self.n} samples "
                    f"({self.passed} of {self.n} at or above it, lowest {self.lowest:.3f})")
        return [f"{head} (embedding model {self.model})"]


def _lines(text: str) -> list[str]:
    """The text's own lines for the diff; a carriage return shows as ``\\r`` rather than moving the cursor."""
    return [line.replace("\r", "\\r") for line in text.split("\n")]


# What a file name cannot hold (syrupy's rule for single-file snapshots): these
# characters and every control/format character are dropped.
_NOT_IN_FILE_NAMES = frozenset('\\/?*:|"<>')
_MAX_STEM = 255 - len(".llm.txt")


def _clean(name: str) -> str:
    return "".join(c for c in name if c not in _NOT_IN_FILE_NAMES and not unicodedata.category(c).startswith("C"))


def file_stem(test_name: str, index_suffix: str = "") -> str:
    """The snapshot file name (without ``.llm.txt``) of a test's snapshot name and assert index.

    Where dropping characters changed the name, ``~`` and 8 hex digits of a hash
    of the full name follow it, so ``test_path[a/b]`` and ``test_path[ab]`` keep
    apart (``test_path[ab]~cc5b2fe0`` and ``test_path[ab]``); every other name is
    syrupy's, so existing snapshots keep their files.
    """
    clean, index_part = _clean(test_name), _clean(index_suffix)
    if clean == test_name:
        return (clean + index_part)[:_MAX_STEM]
    tag = "~" + hashlib.blake2b(test_name.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return clean[: _MAX_STEM - len(tag) - len(index_part)] + tag + index_part


_PATHS: dict[tuple[str, ...], str] = {}


def _remember(key: tuple[str, ...], compute: Any) -> str:
    found = _PATHS.get(key)
    if found is None:
        found = _PATHS[key] = compute()
    return found


class SemanticSnapshotExtension(SingleFileSnapshotExtension):
    """Matches when the cosine similarity of stored and new text reaches the threshold."""

    file_extension = "llm.txt"
    _write_mode = WriteMode.TEXT

    def __init__(self) -> None:
        super().__init__()
        self.threshold: float | None = None
        self.location = ""
        self.samples: list[str] = []
        self.verdict: Verdict | None = None

    # syrupy asks for these paths thousands of times in a run of a few hundred
    # snapshots, each time through pathlib; they depend only on the test file,
    # the test name and the index, so remember them.
    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        key = ("dir", str(test_location.filepath), test_location.basename, cls.snapshot_dirname)
        return _remember(key, lambda: super(SemanticSnapshotExtension, cls).dirname(test_location=test_location))

    @classmethod
    def discovery_dirname(cls, *, test_location: Any) -> str:
        key = ("discovery", str(test_location.filepath), test_location.basename, cls.snapshot_dirname)
        parent = super()
        return _remember(key, lambda: parent.discovery_dirname(test_location=test_location))

    @classmethod
    def get_snapshot_name(cls, *, test_location: Any, index: Any = 0) -> str:
        """syrupy's name (test name, ``.N`` for a later assert), distinct where characters were dropped."""
        suffix = f"[{index}]" if isinstance(index, str) else f".{index}" if index else ""
        return file_stem(test_location.snapshot_name, suffix)

    @classmethod
    def matches_test_location(cls, *, test_location: Any, snapshot_location: str) -> bool:
        """Which test owns a snapshot file, for syrupy's unused-snapshot report: ours, by `file_stem`, too."""
        if super().matches_test_location(test_location=test_location, snapshot_location=snapshot_location):
            return True
        loc = Path(snapshot_location)
        suffix = f".{cls.file_extension}"
        if not loc.name.endswith(suffix) or loc.parent.name != test_location.basename:
            return False
        stem, own = loc.name[: -len(suffix)], cls.get_snapshot_name(test_location=test_location)
        return (stem == own or stem.startswith((own + ".", own + "["))) and (
            test_location.matches_snapshot_site(snapshot_location))

    def read_snapshot_data_from_location(self, *, snapshot_location: str, snapshot_name: str,
                                         session_id: str) -> str | None:
        try:
            return read(snapshot_location)
        except FileNotFoundError:
            return None

    @classmethod
    def get_location(cls, *, test_location: Any, index: Any) -> str:
        key = ("file", str(test_location.filepath), test_location.snapshot_name, str(index), cls.snapshot_dirname)
        parent = super()
        return _remember(key, lambda: parent.get_location(test_location=test_location, index=index))

    def serialize(self, data: Any, **kwargs: Any) -> str:
        texts = texts_of(data)
        self.samples = texts
        engine = get_engine()
        if len(texts) == 1 and not isinstance(data, (list, tuple)):
            return render(engine.identity, texts[0])
        return render(engine.identity, self._medoid(texts), samples=len(texts))

    @staticmethod
    def _medoid(texts: list[str]) -> str:
        """The sample closest to all others: the most representative one to store."""
        if len(set(texts)) == 1:
            return texts[0]
        vectors = get_engine().embed(texts)
        scores = [sum(float(vectors[a] @ vectors[b]) for b in texts) for a in texts]
        return texts[max(range(len(texts)), key=scores.__getitem__)]

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        engine = get_engine()
        stored = parse(str(snapshot_data), self.location or "snapshot")
        threshold = self.threshold if self.threshold is not None else engine.threshold
        if stored.model != engine.identity:
            self.verdict = Verdict(engine.identity, threshold, stored_model=stored.model)
            return False
        prefetch_references(engine)
        sims = engine.similarities([(stored.text, t) for t in self.samples])
        mean = math.fsum(sims) / len(sims)
        lowest = min(range(len(sims)), key=sims.__getitem__)
        self.verdict = Verdict(engine.identity, threshold, mean, sims[lowest], len(sims),
                               sum(s >= threshold for s in sims), stored.model, self.samples[lowest])
        return mean >= threshold

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        verdict = self.verdict
        if verdict is not None:
            yield from verdict.lines()
            if verdict.rebaseline:
                return
        new = verdict.worst if verdict is not None and verdict.n > 1 else parse(str(serialized_data), "reply").text
        old = parse(str(snapshot_data), self.location).text if snapshot_data else ""
        label = "least similar sample" if verdict is not None and verdict.n > 1 else "reply"
        old, new = scrub(old), scrub(new)  # a CI log must not show a secret the reply echoed
        diff = list(difflib.unified_diff(_lines(old), _lines(new), "stored", label, lineterm="", n=2))
        yield from diff or ["(stored and new text are identical)"]

    @classmethod
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, name_order: dict[str, int] | None = None
    ) -> None:
        data = next(iter(snapshot_collection)).data
        atomic_write_text(Path(snapshot_collection.location), scrub(str(data)))  # a reply may echo a secret


class LLMSnapshotAssertion(SnapshotAssertion):
    """``assert reply == llm_snapshot`` or ``assert reply == llm_snapshot(threshold=0.9)``."""

    recorder: MetricsRecorder | None = None
    _threshold_override: float | None = None

    def __call__(self, *, threshold: float | None = None, **kwargs: Any) -> SnapshotAssertion:  # type: ignore[override]
        if threshold is not None:
            self._threshold_override = check_threshold(threshold, "llm_snapshot(threshold=...)")
            self._post_assert_actions.append(lambda: setattr(self, "_threshold_override", None))
        return super().__call__(**kwargs)

    def _assert(self, data: Any) -> bool:
        extension = self.extension
        assert isinstance(extension, SemanticSnapshotExtension)
        index = self.index
        extension.threshold = self._threshold_override
        extension.location = extension.get_location(test_location=self.test_location, index=index)
        extension.verdict = None
        ok = super()._assert(data)
        result = self.executions[self.num_executions - 1]
        if isinstance(result.exception, LLMMetricsError):
            raise result.exception  # a broken snapshot file: its own message, not syrupy's traceback dump
        verdict = extension.verdict
        if self.recorder is not None:
            self.recorder.fingerprint["embedding_model"] = get_engine().identity
        if self.recorder is not None and result.exception is None:
            name = "similarity[snapshot]" if index == 0 else f"similarity[snapshot.{index}]"
            if result.created or result.updated:
                # The reply just became the reference.
                self.recorder.record(name, 1.0, higher_is_better=True)
            elif verdict is not None and not verdict.rebaseline:
                self.recorder.record(name, verdict.similarity, higher_is_better=True)
        return ok


# Snapshot folders and test names of the tests selected in this process, so the
# first comparison can encode every stored reference not yet cached in one batch.
_SELECTED: set[tuple[Path, str]] = set()
_PREFETCHED: set[str] = set()


def register_selected(items: list[pytest.Item]) -> None:
    """Remember where the selected ``llm_snapshot`` tests keep their snapshots (cheap: no file access)."""
    _SELECTED.clear()
    _PREFETCHED.clear()
    folders: dict[Path, Path] = {}
    for item in items:
        if "llm_snapshot" not in getattr(item, "fixturenames", ()):
            continue
        path = item.path
        folder = folders.get(path)
        if folder is None:
            folder = folders[path] = path.parent / SemanticSnapshotExtension.snapshot_dirname / path.stem
        # syrupy's snapshot name: the classes (as in the node id), then the test name
        _SELECTED.add((folder, file_stem(".".join(item.nodeid.split("::")[1:-1] + [item.name]))))


class KeepSnapshotsOfFailedTests:
    """A test that failed or errored before its ``llm_snapshot`` assert keeps its snapshots.

    syrupy calls a snapshot unused when its test ran without asserting it, and
    ``--snapshot-update`` deletes it: a model server down for one run would wipe
    the references. syrupy keeps the snapshots of skipped tests (it cannot know
    what they would assert), so a failed ``llm_snapshot`` test is reported to it
    as skipped; pytest still counts it as failed. syrupy has no public hook for
    this: ``SnapshotSession.ran_item`` is what its own ``pytest_runtest_logreport``
    calls. Under xdist each worker tells its own syrupy session, whose report
    the controller merges.
    """

    NAME = "llmmetrics-snapshot-keeper"

    def __init__(self, config: pytest.Config, nodeids: set[str]) -> None:
        self.config = config
        self.nodeids = nodeids

    @classmethod
    def register(cls, config: pytest.Config, items: list[pytest.Item]) -> None:
        nodeids = {item.nodeid for item in items if "llm_snapshot" in getattr(item, "fixturenames", ())}
        if nodeids and not config.pluginmanager.has_plugin(cls.NAME):
            config.pluginmanager.register(cls(config, nodeids), cls.NAME)

    @pytest.hookimpl(trylast=True)  # after syrupy's own, which records the outcome
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and report.when != "teardown" and report.nodeid in self.nodeids:
            ran_item = getattr(getattr(self.config, "_syrupy", None), "ran_item", None)
            if ran_item is not None:
                ran_item(report.nodeid, "skipped")


def prefetch_references(engine: Any) -> None:
    """Make sure every stored reference of the selected tests is encoded, in one batch, once per process."""
    if engine.identity in _PREFETCHED:
        return
    _PREFETCHED.add(engine.identity)
    suffix = f".{SemanticSnapshotExtension.file_extension}"
    by_folder: dict[Path, set[str]] = {}
    for folder, name in _SELECTED:
        by_folder.setdefault(folder, set()).add(name)
    references = []
    for folder, names in by_folder.items():
        try:
            files = [f for f in os.scandir(folder) if f.name.endswith(suffix)]
        except OSError:
            continue
        for entry in files:
            stem = entry.name[: -len(suffix)]
            # <test name>.llm.txt, or <test name>.<index>.llm.txt for later asserts in a test
            if stem not in names and stem.rsplit(".", 1)[0] not in names:
                continue
            try:
                stored = parse(read(entry.path), entry.path)
            except (OSError, ConfigError):
                continue  # reported by the test that owns it
            if stored.model == engine.identity:
                references.append(stored.text)
    engine.ensure_encoded(references)


def make_assertion(request: pytest.FixtureRequest, recorder: MetricsRecorder) -> LLMSnapshotAssertion:
    from syrupy.location import PyTestLocation

    if not request.config.pluginmanager.hasplugin("syrupy"):
        raise ConfigError(
            f"{request.node.nodeid}: llm_snapshot needs the syrupy pytest plugin, and this run switched it off "
            "(-p no:syrupy on the command line, in addopts or in PYTEST_ADDOPTS). Remove -p no:syrupy to run "
            "snapshot tests, or deselect them (-k 'not ...')"
        )
    # What syrupy's own ``snapshot`` fixture does; building it directly saves
    # registering a second, unused assertion per test.
    session = getattr(request.config, "_syrupy", None)
    if session is None:
        session = request.getfixturevalue("snapshot").session
    assertion = LLMSnapshotAssertion(
        update_snapshots=request.config.option.update_snapshots,
        update_new_snapshots_only=request.config.option.update_new_snapshots_only,
        extension_class=SemanticSnapshotExtension,
        test_location=PyTestLocation(request.node),
        session=session,
    )
    assertion.recorder = recorder
    return assertion
