"""The model matrix: each test that uses ``llm`` or ``allm`` once per model, kept apart, compared with the first.

``--llm-model`` given several times (or ``llm_models``) names the models; tests whose fixtures include
``llm_model_spec`` get one copy per model, the spec last in the id (``test_refund[case3-local]``), unless
their ``llm`` marker names ``model=``. The id keeps recordings and the baseline apart; the report compares
the models (`baseline.models`). Nothing heavy is imported here: it loads at start-up.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmmetrics import state
from pytest_llmmetrics.redact import scrub

if TYPE_CHECKING:
    from pytest_llmmetrics.response import Response

MATRIX_ARG = "llm_model_spec"
# ``llm_snapshot(per_model=True)``'s files in the model matrix: ``*.llm-model``, beside the shared ``*.llm.txt``.
PER_MODEL_EXTENSION = "llm-model"


def hide_per_model_snapshots(config: pytest.Config, models: Sequence[str]) -> None:
    """Outside the model matrix, syrupy never sees the per-model snapshots.

    syrupy's default (amber) extension, which the ``snapshot`` fixture under
    ``llm_snapshot`` brings into every run, counts each file under
    ``__snapshots__`` that no extension of the run owns as an unknown
    collection, and a complete ``--snapshot-update`` deletes those: a one-model
    run would delete every model's reference. A file whose last suffix is in
    syrupy's ``--snapshot-ignore-file-extensions`` is never discovered, so a
    one-model run adds ``llm-model`` to that list (the user's own entries
    stay). Matrix runs discover them, and delete those of a model no longer
    named, as syrupy does any snapshot no test asserts.
    """
    if len(models) > 1 or not hasattr(config.option, "ignore_file_extensions"):
        return
    ignored = list(config.option.ignore_file_extensions or [])
    if PER_MODEL_EXTENSION not in ignored:
        config.option.ignore_file_extensions = [*ignored, PER_MODEL_EXTENSION]


def loadgroup(config: pytest.Config) -> bool:
    """``--dist loadgroup``: on the controller ``dist`` says so, on a worker xdist sets ``loadgroup``."""
    option = config.option
    return bool(getattr(option, "loadgroup", False)) or getattr(option, "dist", None) == "loadgroup"


def plain_nodeid(nodeid: str, config: pytest.Config) -> str:
    """A test's id without the ``@group`` xdist appends under ``--dist loadgroup``.

    The baseline, the recordings and the report key tests by id; the same test
    must have the same id however it is distributed. The suffix follows the
    test's name (after its ``[...]`` parameters, if any), where no Python
    test name can hold an ``@``.
    """
    if "@" not in nodeid or not loadgroup(config):
        return nodeid
    tail_start = max(nodeid.rfind("::") + 2, nodeid.rfind("]") + 1)
    at = nodeid.find("@", tail_start)
    return nodeid[:at] if at >= 0 else nodeid


def model_in(nodeid: str, specs: Sequence[str]) -> str | None:
    """The model a matrix test id ends with (``test_a[x-local]``: ``local``), or None."""
    if not nodeid.endswith("]"):
        return None
    for spec in sorted(specs, key=len, reverse=True):  # openai:gpt-4o-mini before a model named mini
        if nodeid.endswith((f"[{spec}]", f"-{spec}]")):
            return spec
    return None


def without_model(nodeid: str, spec: str | None) -> str:
    """A test id without the model the matrix put last in it: ``t.py::test_a[x]`` for ``t.py::test_a[x-local]``
    and ``t.py::test_a`` for ``t.py::test_a[local]``; any other id as it is."""
    if spec and nodeid.endswith(f"[{spec}]"):
        return nodeid[: -len(spec) - 2]
    if spec and nodeid.endswith(f"-{spec}]"):
        return nodeid[: -len(spec) - 2] + "]"
    return nodeid


def with_model(name: str, spec_id: str) -> str:
    """`without_model` undone: ``test_a[x]`` and ``test_a`` as the matrix copy of model ``spec_id`` is named."""
    return f"{name[:-1]}-{spec_id}]" if "[" in name and name.endswith("]") else f"{name}[{spec_id}]"


def snapshot_names(own: str, *, spec_id: str | None = None, one_model_id: str | None = None
                   ) -> tuple[list[str], list[str]]:
    """The snapshot names a test's files take (an assert index may follow): those of its ``*.llm.txt`` files,
    and of its ``*.llm-model`` ones. ``own``: its snapshot name (classes, then the test's name); ``spec_id``:
    its model's id, for a copy in the model matrix (the shared reference is named without it, a per-model
    one with it); ``one_model_id``: the model of a one-model run, for a test the matrix would multiply (its
    per-model file is its matrix copy's)."""
    if spec_id is not None:
        return [without_model(own, spec_id)], [own]
    return [own], [with_model(own, one_model_id)] if one_model_id else []


def vanished(reference: Mapping[str, Any], collected: set[str], specs: Sequence[str]) -> set[str]:
    """The tests of ``reference`` (a baseline) that a complete collection no longer holds.

    A test run with another set of models still exists: a matrix copy
    (``test_a[local]``, its model in its fingerprint) when this run tests one
    model, a one-model entry (``test_a``) when this run is the matrix. Their
    entries are kept, as a test that did not run, so switching between one
    model and the matrix never empties the baseline. ``specs``: this run's
    models, as they appear in the ids.
    """
    cases = {without_model(nodeid, model_in(nodeid, specs)) if len(specs) > 1 else nodeid for nodeid in collected}
    gone = set()
    for nodeid, test in reference.items():
        if nodeid in collected:
            continue
        model = (test.get("fingerprint") or {}).get("model") if isinstance(test, Mapping) else None
        if without_model(nodeid, model if isinstance(model, str) else None) not in cases and nodeid not in cases:
            gone.add(nodeid)
    return gone


def scheduler(config: pytest.Config, log: Any, specs: Sequence[str]) -> Any:
    """``--dist loadgroup`` that keeps each model's tests on one worker, on every pytest.

    xdist groups tests by the ``@group`` it appends to their ids; pytest 9.2's
    structured ids no longer take that suffix (pytest-xdist issue #1386), so
    grouping silently stops. This scheduler groups the matrix's tests by the
    model their id ends with, and keeps xdist's own ``xdist_group`` groups
    where the suffix is there.
    """
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    class ModelGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope: str = super()._split_scope(nodeid)
            if scope != nodeid:  # xdist's own @group
                return scope
            return model_in(nodeid, specs) or nodeid

    return ModelGroupScheduling(config, log)


def marked_model(marks: Sequence[pytest.Mark]) -> str | None:
    """The ``model=`` of the closest ``llm`` marker that gives one, as the fixtures resolve it (the closest
    marker wins per argument): ``model=None`` there unpins a test that an outer marker pins, and it runs
    against the run's model, once per model in the matrix."""
    for mark in marks:
        if "model" in mark.kwargs:
            return str(mark.kwargs["model"]) if mark.kwargs["model"] else None
    return None


def parametrize(metafunc: pytest.Metafunc, specs: Sequence[str], secrets: Mapping[str, str]) -> None:
    """One copy of the test per model, the spec as the last part of its id (see the module docstring);
    ``secrets``: the environment's, redacted in the ids (a spec may hold one by mistake: ``openai:$KEY``)."""
    if MATRIX_ARG not in metafunc.fixturenames or len(specs) < 2:
        return
    definition = metafunc.definition
    if marked_model(list(definition.iter_markers("llm"))) is not None:
        return  # the test names its model: it runs once, with it
    for mark in definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if MATRIX_ARG in ([n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)):
            return  # the test chose its own models
    # Under --dist loadgroup, xdist sends the tests of one group to one worker: one model per worker.
    grouped = loadgroup(metafunc.config)
    params = [pytest.param(spec, id=scrub(spec, secrets), marks=(pytest.mark.xdist_group(spec),) if grouped else ())
              for spec in specs]
    metafunc.parametrize(MATRIX_ARG, params, indirect=True)


def spec_of(item: pytest.Item) -> str | None:
    """The model of a matrix copy of a test, or None for a test that is not multiplied."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    spec = callspec.params.get(MATRIX_ARG)
    return spec if isinstance(spec, str) else None


def case_name(item: pytest.Item, spec: str) -> str:
    """The test's name without the model: ``test_refund`` for ``test_refund[local]``, ``test_a[x]`` for
    ``test_a[x-local]``. The same for every model's copy, so their results pair up (and can share a snapshot)."""
    name = item.name
    stripped = without_model(name, spec)
    if stripped != name:
        return stripped
    # pytest made the id unique (a suffix) or escaped it: name the copy by the other parameters' positions.
    callspec = getattr(item, "callspec", None)
    others = sorted((k, v) for k, v in getattr(callspec, "indices", {}).items() if k != MATRIX_ARG)
    base = getattr(item, "originalname", name.split("[", 1)[0])
    return f"{base}[{'-'.join(f'{k}{v}' for k, v in others)}]" if others else base


def would_multiply(item: pytest.Item) -> bool:
    """Whether the model matrix makes a copy of this test per model (it takes the model and names none)."""
    return MATRIX_ARG in getattr(item, "fixturenames", ()) and marked_model(list(item.iter_markers("llm"))) is None


def case_of(item: pytest.Item, spec: str) -> str:
    """The test id without the model (see `case_name`), with its module and classes."""
    nodeid = plain_nodeid(item.nodeid, item.config)
    return nodeid[: len(nodeid) - len(item.name)] + case_name(item, spec)


RUN_KEY = pytest.StashKey["dict[str, str] | None"]()


def run_of(item: pytest.Item) -> dict[str, str] | None:
    """``{"model", "case"}`` of a matrix copy the model comparison counts, worked out once per test; None for
    a test that is not multiplied, or a case that names another model in its marks (in no model's column)."""
    found = item.stash.get(RUN_KEY, ...)
    if found is ...:
        spec = spec_of(item)
        found = None
        if spec is not None and marked_model(list(item.iter_markers("llm"))) in (None, spec):
            found = {"model": spec, "case": case_of(item, spec)}
        item.stash[RUN_KEY] = found
    return found


# --- what each model cost ---------------------------------------------------------------------------------------

@dataclass
class Usage:
    """The replies of the model under test in one test (or summed over tests): counts, time, tokens, cost.

    Each total sums the replies that report it; ``*_known`` say how many did
    (a ``py:`` callable that returns a string reports no tokens).
    """

    calls: int = 0
    latency_s: float = 0.0
    timed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted: int = 0
    cost_usd: float = 0.0
    priced: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, reply: Response) -> None:
        """One reply (``llm.sample`` adds from several threads)."""
        with self._lock:
            self.calls += 1
            if reply.latency_s is not None and math.isfinite(reply.latency_s):
                self.latency_s += reply.latency_s
                self.timed += 1
            if reply.prompt_tokens is not None and reply.completion_tokens is not None:
                self.prompt_tokens += reply.prompt_tokens
                self.completion_tokens += reply.completion_tokens
                self.counted += 1
                price = state.price_of(reply.model)
                if price is not None:
                    self.cost_usd += (reply.prompt_tokens * price[0] + reply.completion_tokens * price[1]) / 1e6
                    self.priced += 1

    def merge(self, other: Mapping[str, Any]) -> None:
        """Add another test's `as_dict` (what an xdist worker sent)."""
        for name in _USAGE_FIELDS:
            setattr(self, name, getattr(self, name) + other.get(name, 0))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _USAGE_FIELDS}


_USAGE_FIELDS = ("calls", "latency_s", "timed", "prompt_tokens", "completion_tokens", "counted", "cost_usd", "priced")


@dataclass
class ModelTotals:
    """One model over the run: its tests, how they ended, and what its replies cost."""

    model: str
    tests: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)

    def as_dict(self) -> dict[str, Any]:
        u = self.usage
        return {"model": self.model, "tests": self.tests, "failed": self.failed, "calls": u.calls,
                "latency_s": u.latency_s if u.timed else None,
                "prompt_tokens": u.prompt_tokens if u.counted else None,
                "completion_tokens": u.completion_tokens if u.counted else None,
                "cost_usd": u.cost_usd if u.priced else None,
                "complete": {"latency_s": u.timed == u.calls, "tokens": u.counted == u.calls,
                             "cost_usd": u.priced == u.calls}}
