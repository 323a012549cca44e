"""Semantic snapshots: a syrupy extension that passes while a reply stays close in meaning.

Built on syrupy's public extension API only (an extension class, the assertion's
``extension_class=`` option, ``matches``), but for one marked call in
`KeepSnapshotsOfFailedTests`. Each snapshot is one text file,
``__snapshots__/<test module>/<test name>.llm.txt``: a header naming the embedding
model, then the reply exactly as written, so no two xdist workers share a file.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.metadata
import inspect
import math
import os
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension

from pytest_llmmetrics import matrix, options
from pytest_llmmetrics.errors import ConfigError, LLMMetricsError, LLMMetricsWarning
from pytest_llmmetrics.files import atomic_write_text, read_text
from pytest_llmmetrics.redact import scrub, session_secrets
from pytest_llmmetrics.response import Response
from pytest_llmmetrics.semantic.engine import check_threshold, get_engine

if TYPE_CHECKING:
    from syrupy.data import SnapshotCollection
    from syrupy.types import SnapshotIndex

    from pytest_llmmetrics.llm_metrics import MetricsRecorder
    from pytest_llmmetrics.semantic.engine import EmbeddingEngine

MODEL_FIELD = "embedding-model"
DEFERRED = "(compared from the next run)"
DEFERRED_WARNING = (
    "llm_snapshot: in a --snapshot-update run, the model matrix records the first model's answers as the shared "
    "references; the other models' copies of the test compare with them from the next run (syrupy counts them "
    "as passed in this run without comparing; llm_snapshot(per_model=True) keeps a reference per model)")
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

    @property
    def matched(self) -> bool:
        return not self.rebaseline and self.similarity >= self.threshold

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


# syrupy asks for a snapshot's paths thousands of times in a run of a few hundred
# snapshots, each time through pathlib. A process-wide cache, safe across runs
# in one process (pytester's runpytest()): the key holds everything a path
# depends on (test file, test name, index, folder name, file extension).
_PATHS: dict[tuple[Any, ...], str] = {}


def _remember(key: tuple[Any, ...], compute: Callable[[], str]) -> str:
    found = _PATHS.get(key)
    if found is None:
        found = _PATHS[key] = compute()
    return found


@dataclass
class Comparison:
    """One ``reply == llm_snapshot``: what it compares and, once compared, the verdict.

    syrupy hands it to `SemanticSnapshotExtension.serialize`, whose result
    (`Serialized`) carries it on to ``matches`` and ``diff_lines``: what one
    assert found stays with that assert, never on an extension others share.
    """

    data: Any
    run: SnapshotRun | None = None
    samples: list[str] = field(default_factory=list)
    verdict: Verdict | None = None


class Serialized(str):
    """A snapshot file's text as syrupy compares and writes it, with the `Comparison` it came from."""

    comparison: Comparison

    def __new__(cls, text: str, comparison: Comparison) -> Serialized:  # noqa: PYI034
        self = super().__new__(cls, text)
        self.comparison = comparison
        return self


@contextmanager
def _own_message() -> Iterator[None]:
    """Our errors (a broken snapshot file, an embedding model that cannot load) fail the test with their message.

    syrupy turns an exception in an extension into a failed compare whose diff
    is the traceback. pytest's failure outcome is a BaseException, which syrupy
    lets through after counting the assert as failed; nothing gets written.
    """
    try:
        yield
    except LLMMetricsError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


class SemanticSnapshotExtension(SingleFileSnapshotExtension):
    """Matches when the cosine similarity of stored and new text reaches the threshold.

    A plain syrupy extension: ``snapshot.use_extension(SemanticSnapshotExtension)``
    works without ``llm_snapshot`` (which adds the recorded similarity metric).
    """

    file_extension = "llm.txt"
    threshold: ClassVar[float | None] = None  # None: the engine's, from llm_similarity_threshold
    # The model matrix: the test's snapshot name without its model, shared by every model's copy of the test.
    shared_name: ClassVar[str | None] = None
    # The model matrix in a --snapshot-update run: another model's copy, which neither compares nor writes.
    deferred: ClassVar[bool] = False

    @classmethod
    def with_threshold(cls, threshold: float) -> type[SemanticSnapshotExtension]:
        """This extension with its own threshold: what ``llm_snapshot(threshold=...)`` gives syrupy for one assert."""
        return cls.variant(threshold=threshold)

    @classmethod
    def variant(cls, **attributes: Any) -> type[SemanticSnapshotExtension]:
        """This extension with other class settings (``threshold``, ``shared_name``): one class per setting,
        since syrupy takes an extension as a class."""
        if all(getattr(cls, name) == value for name, value in attributes.items()):
            return cls
        key = (cls, tuple(sorted(attributes.items())))
        found = _VARIANTS.get(key)
        if found is None:
            shown = ", ".join(f"{name}={value!r}" for name, value in sorted(attributes.items()))
            found = _VARIANTS[key] = type(f"{cls.__name__}[{shown}]", (cls,), {**attributes,
                                                                                 "__module__": cls.__module__})
        return found

    @classmethod
    def _name(cls, test_location: Any) -> str:
        return cls.shared_name or test_location.snapshot_name

    @classmethod
    def _path_key(cls, kind: str, test_location: Any, *rest: Any) -> tuple[Any, ...]:
        return (kind, str(test_location.filepath), *rest, cls.snapshot_dirname, cls.file_extension)

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return _remember(cls._path_key("dir", test_location),
                         functools.partial(super().dirname, test_location=test_location))

    @classmethod
    def discovery_dirname(cls, *, test_location: Any) -> str:
        return _remember(cls._path_key("discovery", test_location),
                         functools.partial(super().discovery_dirname, test_location=test_location))

    @classmethod
    def get_location(cls, *, test_location: Any, index: Any) -> str:
        # The index itself, not its text: the second assert (1) and one named "1" have different files.
        return _remember(cls._path_key("file", test_location, cls._name(test_location), index),
                         functools.partial(super().get_location, test_location=test_location, index=index))

    @classmethod
    def get_snapshot_name(cls, *, test_location: Any, index: Any = 0) -> str:
        """syrupy's name (test name, ``.N`` for a later assert), distinct where characters were dropped."""
        suffix = f"[{index}]" if isinstance(index, str) else f".{index}" if index else ""
        return file_stem(cls._name(test_location), suffix)

    @classmethod
    def matches_test_location(cls, *, test_location: Any, snapshot_location: str) -> bool:
        """Which test owns a snapshot file, for syrupy's unused-snapshot report: any test of the module owns
        the module's semantic snapshots, as syrupy's own rule has it for a test that is not parametrized.
        syrupy still deletes only what no assert used (and keeps what skipped tests own by name); a name rule
        here would keep, in a run given a path, the snapshots of a renamed test or of a removed assert,
        because the model matrix names its files in ways syrupy's name rule does not know."""
        if super().matches_test_location(test_location=test_location, snapshot_location=snapshot_location):
            return True
        loc = Path(snapshot_location)
        return (loc.parent.name == test_location.basename and stem_of(loc.name) is not None
                and test_location.matches_snapshot_site(snapshot_location))

    def read_snapshot_data_from_location(self, *, snapshot_location: str, snapshot_name: str,
                                         session_id: str) -> str | None:
        if self.deferred:  # nothing to read: it compares from the next run, stored or not
            return render(DEFERRED, "")
        with _own_message():
            try:
                data = read(snapshot_location)
            except FileNotFoundError:
                return None
            parse(data, snapshot_location)  # a hand-broken file fails here, naming itself, and is never overwritten
            return data

    def serialize(self, data: Any, **kwargs: Any) -> Serialized:
        comparison = data if isinstance(data, Comparison) else Comparison(data)
        texts = comparison.samples = texts_of(comparison.data)
        with _own_message():
            engine = get_engine()
            if len(texts) == 1 and not isinstance(comparison.data, (list, tuple)):
                return Serialized(render(engine.identity, texts[0]), comparison)
            return Serialized(render(engine.identity, self._medoid(texts), samples=len(texts)), comparison)

    @staticmethod
    def _medoid(texts: list[str]) -> str:
        """The sample closest to all others: the most representative one to store."""
        if len(set(texts)) == 1:
            return texts[0]
        vectors = get_engine().embed(texts)
        scores = [sum(float(vectors[a] @ vectors[b]) for b in texts) for a in texts]
        return texts[max(range(len(texts)), key=scores.__getitem__)]

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        if self.deferred:
            return True
        comparison: Comparison = serialized_data.comparison
        with _own_message():
            engine = get_engine()
            stored = parse(str(snapshot_data), "snapshot")  # checked when read
            threshold = self.threshold if self.threshold is not None else engine.threshold
            if stored.model != engine.identity:
                comparison.verdict = Verdict(engine.identity, threshold, stored_model=stored.model)
                return False
            if comparison.run is not None:
                comparison.run.prefetch(engine)
            samples = comparison.samples
            sims = engine.similarities([(stored.text, t) for t in samples])
        lowest = min(range(len(sims)), key=sims.__getitem__)
        comparison.verdict = Verdict(engine.identity, threshold, math.fsum(sims) / len(sims), sims[lowest], len(sims),
                                     sum(s >= threshold for s in sims), stored.model, samples[lowest])
        return comparison.verdict.matched

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        verdict = serialized_data.comparison.verdict
        if verdict is not None:
            yield from verdict.lines()
            if verdict.rebaseline:
                return
        several = verdict is not None and verdict.n > 1
        new = verdict.worst if verdict is not None and several else parse(str(serialized_data), "reply").text
        old = parse(str(snapshot_data), "snapshot").text if snapshot_data else ""
        old, new = scrub(old), scrub(new)  # a CI log must not show a secret the reply echoed
        diff = difflib.unified_diff(_lines(old), _lines(new), "stored", "least similar sample" if several else "reply",
                                    lineterm="", n=2)
        yield from list(diff) or ["(stored and new text are identical)"]

    @classmethod
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, name_order: dict[str, int] | None = None
    ) -> None:
        if cls.deferred:
            return
        data = next(iter(snapshot_collection)).data
        atomic_write_text(Path(snapshot_collection.location), scrub(str(data)))  # a reply may echo a secret


# One class per (extension, settings) for the whole process: the classes hold
# nothing else, so runs in one process share them safely.
_VARIANTS: dict[tuple[type[SemanticSnapshotExtension], tuple[tuple[str, Any], ...]],
                type[SemanticSnapshotExtension]] = {}


@dataclass(eq=False, repr=False)
class LLMSnapshotAssertion(SnapshotAssertion):
    """``assert reply == llm_snapshot`` or ``assert reply == llm_snapshot(threshold=0.9)``.

    syrupy's assertion, plus what ``llm_snapshot`` adds: ``threshold=`` becomes
    a per-assert extension class through syrupy's ``extension_class=`` option
    (which keeps the assert's index and is undone after it), and every compare's
    similarity is recorded as a metric.
    """

    recorder: MetricsRecorder | None = None
    run: SnapshotRun | None = None
    follows: str | None = None  # the model matrix: the first model, when this copy of the test runs another
    per_model_name: str | None = None  # a one-model run: the snapshot name of the model's copy in the matrix
    pinned: bool = False  # a matrix case pinned to one model: per_model=True is its one (shared) reference

    def __call__(self, *, threshold: float | None = None, per_model: bool = False, **kwargs: Any
                 ) -> SnapshotAssertion:
        known = _call_arguments()
        for name in kwargs:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"llm_snapshot(): unknown argument {name!r}{hint}; it takes {', '.join(known)}")
        if not isinstance(per_model, bool):
            raise ConfigError(f"llm_snapshot(per_model=...) takes True or False, got {per_model!r}")
        if threshold is not None or per_model:
            extension: type[Any] = kwargs.get("extension_class") or self.extension_class
            if not issubclass(extension, SemanticSnapshotExtension):
                raise TypeError(f"llm_snapshot(threshold=..., per_model=...) needs a SemanticSnapshotExtension, "
                                f"got {extension!r}")
            if threshold is not None:
                extension = extension.with_threshold(check_threshold(threshold, "llm_snapshot(threshold=...)"))
            if per_model and extension.shared_name and not self.pinned:  # the matrix: this model's own reference
                extension = extension.variant(shared_name=None, file_extension=matrix.PER_MODEL_EXTENSION)
            elif per_model and self.per_model_name:  # one model: the same file as its copy in the matrix
                extension = extension.variant(shared_name=self.per_model_name,
                                              file_extension=matrix.PER_MODEL_EXTENSION)
            kwargs["extension_class"] = extension
        return super().__call__(**kwargs)

    def __eq__(self, other: object) -> bool:
        try:
            texts = texts_of(other)
        except TypeError as exc:  # before syrupy, which would wrap it in a traceback dump
            raise ConfigError(f"{exc}: assert reply == llm_snapshot") from None
        extension = type(self.extension)
        if (self.follows and issubclass(extension, SemanticSnapshotExtension) and extension.shared_name
                and (self.update_snapshots or self.update_new_snapshots_only)):
            # Another model's copy in an update run: the first model records the reference; this assert neither
            # compares nor writes (it still counts, so the test's later asserts keep their own snapshots).
            warnings.warn(LLMMetricsWarning(DEFERRED_WARNING), stacklevel=2)
            self(extension_class=extension.variant(deferred=True))
            return bool(super().__eq__(Comparison(other, self.run)))
        if self.update_snapshots:
            # Only a run that may write loads the model here (a compare loads it anyway): a snapshot is
            # never written under the name of a model that cannot load (a typo in --llm-embedding-model).
            get_engine().ensure_encoded(texts)
        index = self.index
        comparison = Comparison(other, self.run)
        passed = super().__eq__(comparison)
        if self.recorder is not None:
            _record_similarity(self.recorder, index, passed, comparison.verdict)
        return passed


@functools.cache
def _call_arguments() -> list[str]:
    """What ``llm_snapshot(...)`` takes: ``threshold`` and syrupy's own arguments."""
    return ["threshold", "per_model",
            *(p for p in inspect.signature(SnapshotAssertion.__call__).parameters if p != "self")]


def _record_similarity(recorder: MetricsRecorder, index: SnapshotIndex, passed: bool, verdict: Verdict | None) -> None:
    """``similarity[snapshot]`` (``similarity[snapshot.1]``, ...): 1.0 where the reply was just stored."""
    recorder.fingerprint["embedding_model"] = get_engine().identity
    name = "similarity[snapshot]" if index == 0 else f"similarity[snapshot.{index}]"
    if passed and (verdict is None or not verdict.matched):  # written (new, or re-recorded): it is the reference now
        recorder.record(name, 1.0, higher_is_better=True)
    elif verdict is not None and not verdict.rebaseline:
        recorder.record(name, verdict.similarity, higher_is_better=True)


@dataclass
class SnapshotRun:
    """This run's ``llm_snapshot`` tests, so the first comparison encodes every stored reference in one batch.

    Kept in ``config.stash``: a run in the same process (pytester's
    ``runpytest()``) has its own and cannot disturb another's.
    """

    selected: set[tuple[Path, str]]  # (snapshot folder, syrupy's snapshot name of the test)
    prefetched: set[str] = field(default_factory=set)  # embedding models that encoded them

    @classmethod
    def of(cls, items: list[pytest.Item]) -> SnapshotRun:
        """Where the selected ``llm_snapshot`` tests keep their snapshots (cheap: no file access)."""
        selected: set[tuple[Path, str]] = set()
        folders: dict[Path, Path] = {}
        for item in items:
            if "llm_snapshot" not in getattr(item, "fixturenames", ()):
                continue
            path = item.path
            folder = folders.get(path)
            if folder is None:
                folder = folders[path] = path.parent / SemanticSnapshotExtension.snapshot_dirname / path.stem
            # syrupy's snapshot name: the classes (as in the node id), then the test name (without its model)
            spec = matrix.spec_of(item)
            name = item.name if spec is None else matrix.case_name(item, spec)
            selected.add((folder, file_stem(".".join(item.nodeid.split("::")[1:-1] + [name]))))
        return cls(selected)

    def prefetch(self, engine: EmbeddingEngine) -> None:
        """Make sure every stored reference of the selected tests is encoded, in one batch, once per model."""
        if engine.identity in self.prefetched:
            return
        self.prefetched.add(engine.identity)
        suffix = f".{SemanticSnapshotExtension.file_extension}"
        by_folder: dict[Path, set[str]] = {}
        for folder, name in self.selected:
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


RUN_KEY = pytest.StashKey[SnapshotRun]()


def register_selected(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Note this run's ``llm_snapshot`` tests in ``config.stash`` (see `SnapshotRun`)."""
    config.stash[RUN_KEY] = SnapshotRun.of(items)


class KeepSnapshotsOfFailedTests:
    """A test that failed or errored before its ``llm_snapshot`` assert keeps its snapshots.

    syrupy calls a snapshot unused when its test ran without asserting it, and
    ``--snapshot-update`` deletes it: a model server down for one run would wipe
    the references. syrupy keeps the snapshots of skipped tests (it cannot know
    what they would assert), so a failed ``llm_snapshot`` test is reported to it
    as skipped (`_tell_syrupy_skipped`); pytest still counts it as failed. Under
    xdist each worker tells its own syrupy session, whose report the controller
    merges.
    """

    NAME = "llmmetrics-snapshot-keeper"

    def __init__(self, config: pytest.Config, nodeids: set[str]) -> None:
        self.config = config
        self.nodeids = nodeids

    @classmethod
    def register(cls, config: pytest.Config, items: list[pytest.Item]) -> None:
        nodeids = {item.nodeid for item in items if "llm_snapshot" in getattr(item, "fixturenames", ())}
        if not nodeids or config.pluginmanager.has_plugin(cls.NAME):
            return
        version = _syrupy_version()
        if not _syrupy_tested(version):
            warnings.warn(LLMMetricsWarning(
                f"syrupy {version} is not a version pytest-llmmetrics was tested with "
                f"({'.x, '.join(map(str, SYRUPY_MAJORS))}.x): a test that fails before its llm_snapshot assert may "
                "have its snapshots reported unused, and deleted by --snapshot-update"), stacklevel=1)
            return
        config.pluginmanager.register(cls(config, nodeids), cls.NAME)

    @pytest.hookimpl(trylast=True)  # after syrupy's own, which records the outcome
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and report.when != "teardown" and report.nodeid in self.nodeids:
            _tell_syrupy_skipped(self.config, report.nodeid)


# The syrupy majors this module was tested with: the bound on syrupy in
# pyproject.toml's `semantic` extra (tests/test_snapshot.py checks they agree).
SYRUPY_MAJORS = (6, 7)


@functools.cache
def _syrupy_version() -> str:
    try:
        return importlib.metadata.version("syrupy")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _syrupy_tested(version: str) -> bool:
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) in SYRUPY_MAJORS


def _tell_syrupy_skipped(config: pytest.Config, nodeid: str) -> None:
    """The one private syrupy API this plugin uses, on the tested syrupy majors only (`SYRUPY_MAJORS`).

    syrupy has no public way to keep a test's snapshots out of its unused
    report. Its own ``pytest_runtest_logreport`` records each outcome with
    ``SnapshotSession.ran_item(nodeid, outcome)`` on ``config._syrupy``; this
    records "skipped" in its place. Should either go away, the snapshots of a
    failed test are reported unused again, as syrupy does by default.
    """
    ran_item = getattr(getattr(config, "_syrupy", None), "ran_item", None)
    if ran_item is not None:
        ran_item(nodeid, "skipped")


SUFFIXES = (".llm.txt", "." + matrix.PER_MODEL_EXTENSION)  # shared (or one model's), per model


def stem_of(file_name: str) -> str | None:
    """A semantic snapshot file's name without its suffix; None for another file."""
    suffix = next((s for s in SUFFIXES if file_name.endswith(s)), None)
    return file_name[: -len(suffix)] if suffix else None


def owns(stem: str, prefixes: Iterable[str]) -> bool:
    """Whether a snapshot file's stem is one of these names' (an assert index, ``.1`` or ``[name]``, may follow)."""
    return any(stem == p or stem.startswith((p + ".", p + "[")) for p in prefixes)


def make_assertion(request: pytest.FixtureRequest, recorder: MetricsRecorder) -> LLMSnapshotAssertion:
    """The ``llm_snapshot`` of a test: syrupy's ``snapshot`` with this extension, recording into ``recorder``."""
    if not request.config.pluginmanager.hasplugin("syrupy"):
        raise ConfigError(
            f"{request.node.nodeid}: llm_snapshot needs the syrupy pytest plugin, and this run switched it off "
            "(-p no:syrupy on the command line, in addopts or in PYTEST_ADDOPTS). Remove -p no:syrupy to run "
            "snapshot tests, or deselect them (-k 'not ...')"
        )
    snapshot = request.getfixturevalue("snapshot")
    extension, follows, per_model_name, pinned = SemanticSnapshotExtension, None, None, False
    item = request.node
    spec = matrix.spec_of(item)
    full = snapshot.test_location.snapshot_name  # the classes, then the test's name
    if spec is not None:  # the model matrix: one reference answer for every model's copy of the test
        extension = extension.variant(shared_name=full[: len(full) - len(item.name)] + matrix.case_name(item, spec))
        first = options.models(request.config)[0]
        # A case pinned to a model runs once: it has no other model's reference (per_model=True is the shared one).
        pinned = matrix.marked_model(list(item.iter_markers("llm"))) is not None
        if spec != first and not pinned and matrix.case_of(item, spec) in _first_copies(request.session, first):
            follows = first  # the first model's copy runs too, and records the reference
    elif matrix.would_multiply(item):  # one model: per_model=True uses the file of this model's matrix copy
        per_model_name = matrix.with_model(full, scrub(options.models(request.config)[0],
                                                       session_secrets(request.config)))
    # What ``snapshot.use_extension(SemanticSnapshotExtension)`` makes (syrupy's
    # with_defaults copies these same public fields), as our subclass.
    return LLMSnapshotAssertion(
        session=snapshot.session,
        test_location=snapshot.test_location,
        update_snapshots=snapshot.update_snapshots,
        update_new_snapshots_only=snapshot.update_new_snapshots_only,
        extension_class=extension,
        recorder=recorder,
        run=request.config.stash.get(RUN_KEY, None),
        follows=follows,
        per_model_name=per_model_name,
        pinned=pinned,
    )


_FIRST_COPIES = pytest.StashKey["frozenset[str]"]()


def _first_copies(session: pytest.Session, first: str) -> frozenset[str]:
    """The cases (test ids without the model) whose first-model copy this session runs: the copies of a case
    defer to it in a --snapshot-update run only then (``-k``, a node id or a pinned case may leave it out)."""
    found = session.stash.get(_FIRST_COPIES, None)
    if found is None:
        found = session.stash[_FIRST_COPIES] = frozenset(
            matrix.case_of(i, first) for i in session.items
            if matrix.spec_of(i) == first and matrix.marked_model(list(i.iter_markers("llm"))) is None)
    return found
