"""A ``--snapshot-update`` run never deletes the semantic snapshots of a test that did not pass.

syrupy deletes every snapshot no assert used, and cannot tie the model matrix's file names to test ids, so
`snapshot.KeepSnapshotsOfFailedTests` alone does not keep them. This guard, on the process that runs syrupy's
clean-up, copies the ``*.llm.txt`` and ``*.llm-model`` files of each collected test that has not passed
(failed, errored, skipped, not reached) before syrupy finishes, and puts back what syrupy deleted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_llmmetrics import matrix, options
from pytest_llmmetrics.files import atomic_write_bytes
from pytest_llmmetrics.redact import env_secrets, scrub


def snapshot_names(nodeid: str, specs: Sequence[str], secrets: dict[str, str]) -> tuple[list[str], list[str]]:
    """`matrix.snapshot_names` of a test, from its id (the controller of an xdist run has no items)."""
    parts = nodeid.split("::")[1:]
    if not parts:
        return [], []
    own = ".".join(parts)
    ids = [scrub(spec, secrets) for spec in specs]
    spec_id = matrix.model_in(own, ids) if len(ids) > 1 else None
    return matrix.snapshot_names(own, spec_id=spec_id, one_model_id=ids[0] if len(ids) == 1 else None)


class Outcomes(Protocol):
    """What the end-of-run report (`baseline.report.MetricsReport`) already tracks, by test id without
    xdist's ``@group``: the collected tests (also under xdist), those that passed and those that failed."""

    collected: set[str]
    passed: set[str]
    failed: set[str]


class SnapshotGuard:
    NAME = "llmmetrics-snapshot-guard"

    def __init__(self, config: pytest.Config, outcomes: Outcomes) -> None:
        self.config = config
        self.outcomes = outcomes
        self.kept: list[Path] = []

    @classmethod
    def register(cls, config: pytest.Config, outcomes: Outcomes) -> None:
        """On the process that runs syrupy's clean-up (where the report runs), in a ``--snapshot-update`` run."""
        if not config.pluginmanager.hasplugin("syrupy") or not getattr(config.option, "update_snapshots", False):
            return
        config.pluginmanager.register(cls(config, outcomes), cls.NAME)

    def _at_risk(self) -> dict[Path, bytes]:
        """The snapshot files of collected tests that have not passed, by path, with their bytes."""
        specs = options.models(self.config)
        secrets = env_secrets()
        dirname = str(getattr(self.config.option, "snapshot_dirname", None) or "__snapshots__")
        by_module: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
        done = self.outcomes.passed - self.outcomes.failed
        for nodeid in self.outcomes.collected - done:
            names = snapshot_names(nodeid, specs, secrets)
            found = by_module[nodeid.split("::", 1)[0]]
            found[0].update(names[0])
            found[1].update(names[1])
        from pytest_llmmetrics.semantic.snapshot import SUFFIXES, file_stem, owns, stem_of

        saved: dict[Path, bytes] = {}
        for module, (shared, per_model) in by_module.items():
            path = self.config.rootpath / module
            folder = path.parent / dirname / path.stem
            if not folder.is_dir():
                continue
            prefixes = ({file_stem(name) for name in shared}, {file_stem(name) for name in per_model})
            for file in folder.iterdir():
                stem = stem_of(file.name)
                if stem is not None and file.is_file() and owns(stem, prefixes[file.name.endswith(SUFFIXES[1])]):
                    try:
                        saved[file] = file.read_bytes()
                    except OSError:
                        continue
        return saved

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        saved = self._at_risk()
        try:
            return (yield)
        finally:
            for path, data in saved.items():
                if not path.exists():
                    try:
                        atomic_write_bytes(path, data)
                    except OSError:
                        continue
                    self.kept.append(path)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.kept:
            n = len(self.kept)
            terminalreporter.write_line(
                f"llm_snapshot: kept {n} snapshot file{'s' if n != 1 else ''} of tests that did not pass in this "
                f"--snapshot-update run (syrupy's summary counts {'them' if n != 1 else 'it'} as deleted)",
                yellow=True)
