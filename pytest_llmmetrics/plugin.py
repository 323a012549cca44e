"""The pytest entry point: options, the ``llm`` marker, fixtures and hooks; logic lives elsewhere."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmmetrics import hookspecs, markers, matrix, options, state
from pytest_llmmetrics.display import printable
from pytest_llmmetrics.errors import ConfigError, LLMMetricsError
from pytest_llmmetrics.redact import env_secrets, scrub, scrub_cut, session_secrets
from pytest_llmmetrics.semantic import engine as semantic_engine
from pytest_llmmetrics.semantic.guard import SnapshotGuard

if TYPE_CHECKING:
    from pytest_llmmetrics.checks.registry import MetricRegistry
    from pytest_llmmetrics.llm import LLM, AsyncLLM
    from pytest_llmmetrics.llm_metrics import MetricsRecorder
    from pytest_llmmetrics.providers.cache import ModelCache
    from pytest_llmmetrics.replay import Recordings

# Start-up discipline: this module imports only what start-up needs (options, the
# marker, the run's engine settings). The subsystems are imported where they are
# first used -- the report at configure, models and checks in the fixtures,
# snapshots when a test asks for one -- so a suite that never uses them pays for
# none of them (benchmarks/startup.py; tests/test_layout.py lists these imports).

MODELS_KEY = pytest.StashKey["ModelCache"]()
REGISTRY_KEY = pytest.StashKey["tuple[tuple[object, ...], MetricRegistry]"]()
ENGINE_KEY = pytest.StashKey["semantic_engine.EmbeddingEngine"]()
RESTORE_KEY = pytest.StashKey["list[Callable[[], object]]"]()
RECORDER_KEY = pytest.StashKey["MetricsRecorder"]()
RECORDINGS_KEY: pytest.StashKey[Recordings] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Note what a run may change in the process, before its conftests load: put back at unconfigure.

    ``@metric`` functions and ``set_price`` calls in conftests and test modules
    land in module-level tables; restoring them when the run ends lets a
    pytester run inside another pytest run leave that run as it was.
    """
    undo: list[Callable[[], object]] = [state.save()]
    early_config.stash[RESTORE_KEY] = undo


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", markers.MARKER_HELP)
    options.check_config(config)
    matrix.hide_per_model_snapshots(config, options.models(config))
    restore = config.stash.setdefault(RESTORE_KEY, [])
    # Cheap: the engine loads its model (and torch) on the first text not in the cache;
    # loaded encoders are cached per process, so a second run does not load them again.
    engine = config.stash[ENGINE_KEY] = semantic_engine.for_run(
        options.get(config, "llm_embedding_model"),
        options.get(config, "llm_device"),
        options.metrics_dir(config) / "cache",
        threshold=options.similarity_threshold(config),
    )
    previous = semantic_engine.activate(engine)
    restore.append(lambda: semantic_engine.activate(previous))
    record_mode = options.get(config, "llm_record_mode")
    if record_mode != "off":
        from pytest_llmmetrics.replay import Recordings

        recordings = config.stash[RECORDINGS_KEY] = Recordings(
            config, record_mode, writer=not hasattr(config, "workerinput"))
        config.pluginmanager.register(recordings, "llmmetrics-recordings")
    if not hasattr(config, "workerinput"):  # xdist workers send their metrics to the controller
        from pytest_llmmetrics.baseline.report import MetricsReport

        report = MetricsReport(
            config,
            options.metrics_dir(config),
            options.get(config, "llm_tolerance"),
            update=bool(options.get(config, "llm_baseline_update")
                        or getattr(config.option, "update_snapshots", False)),
            fail_on_regression=bool(options.get(config, "llm_fail_on_regression")),
            json_path=options.get(config, "llm_report_json"),
            html_path=options.get(config, "llm_report_html"),
            models=options.models(config),
        )
        config.pluginmanager.register(report, "llmmetrics-report")
        SnapshotGuard.register(config, report)  # the same process runs syrupy's clean-up


def pytest_unconfigure(config: pytest.Config) -> None:
    undos: list[Callable[[], object]] = config.stash.get(RESTORE_KEY, [])
    for undo in reversed(undos):
        undo()
    config.stash[RESTORE_KEY] = []


def metric_registry(config: pytest.Config) -> MetricRegistry:
    """Built-ins plus what plugins register; built again when the plugins that register metrics change.

    Keyed by the plugin objects implementing ``pytest_llmmetrics_register_metrics``
    (not their count): one arriving and another leaving gives a new registry too.
    pytest has no hook for a plugin that leaves, so this key is checked on each
    call (a tuple of a few hook implementations: cheap).
    """
    from pytest_llmmetrics.checks.registry import builtin_registry

    plugins = tuple(impl.plugin for impl in config.hook.pytest_llmmetrics_register_metrics.get_hookimpls())
    cached = config.stash.get(REGISTRY_KEY, None)
    if cached is not None and len(cached[0]) == len(plugins) and all(a is b for a, b in zip(cached[0], plugins)):
        return cached[1]
    registry = builtin_registry()
    try:
        config.hook.pytest_llmmetrics_register_metrics(registry=registry, config=config)
    except LLMMetricsError as exc:
        raise ConfigError(f"pytest_llmmetrics_register_metrics: {exc}") from None
    config.stash[REGISTRY_KEY] = (plugins, registry)
    return registry


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    """Bad ``@pytest.mark.llm`` arguments are a collection error naming the test, argument and value.

    A collection error (rather than a session-level usage error) stops the run
    before any test runs, and reads the same under pytest-xdist, whose workers
    do the collecting.
    """
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if not isinstance(item, pytest.Item):
            continue
        marks = list(item.iter_markers("llm"))
        if marks:
            spec = matrix.spec_of(item)  # a matrix copy is named as the test the user wrote
            try:
                markers.validate_marks(marks, matrix.case_of(item, spec) if spec is not None else item.nodeid)
            except ConfigError as exc:
                raise collector.CollectError(str(exc)) from None
    return result


@pytest.hookimpl(trylast=True)  # after the test's own parametrize marks: the model is the id's last part
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The model matrix: with several models, each test using ``llm`` or ``allm`` runs once per model."""
    matrix.parametrize(metafunc, options.models(metafunc.config), session_secrets(metafunc.config))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the model matrix: each model's tests on one worker (see `matrix.scheduler`)."""
    specs = options.models(config)
    if config.getvalue("dist") != "loadgroup" or len(specs) < 2:
        return None
    return matrix.scheduler(config, log, specs)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """A parameter that holds a secret gets an id with the secret redacted, so no test id shows it anywhere."""
    if not isinstance(val, str):
        return None
    clean = scrub(val, session_secrets(config))
    return clean if clean != val else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip ``__snapshots__/<test module>/`` folders of single-file snapshots: they hold no tests.

    Without this, pytest offers every snapshot file to every collector plugin,
    which for a few hundred snapshots costs more than comparing them.
    """
    if collection_path.parent.name == "__snapshots__" and collection_path.is_dir():
        if collection_path.parent.parent.joinpath(collection_path.name + ".py").is_file():
            return True
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("llm_snapshot" in getattr(item, "fixturenames", ()) for item in session.items):
        from pytest_llmmetrics.semantic.snapshot import (
            KeepSnapshotsOfFailedTests,
            register_selected,
        )

        register_selected(session.config, session.items)
        KeepSnapshotsOfFailedTests.register(session.config, session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except LLMMetricsError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test once with every missed check, after it ran to the end."""
    recorder = item.stash.get(RECORDER_KEY, None)
    try:
        result = yield
    except LLMMetricsError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    except BaseException:
        if recorder is not None and recorder.misses:
            item.add_report_section("call", "llm metrics", recorder.failure_message())
        raise
    if recorder is not None and recorder.misses:
        raise pytest.fail.Exception(recorder.failure_message(), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Put the test's metrics on its call report: JUnit properties, and the way to the xdist controller.

    Also redacts secrets in what the report shows (an assertion that prints a
    reply, captured output): the terminal, JUnit XML and xdist all read it.
    """
    report = yield
    if report.failed or report.sections:
        redact_report(report)
    if RECORDINGS_KEY in item.config.stash:
        from pytest_llmmetrics.replay import attach

        attach(item, report)
    recorder = item.stash.get(RECORDER_KEY, None)
    run = matrix.run_of(item)
    if run is not None:  # the model comparison pairs the models' copies of a test and adds up their usage
        report.llm_matrix = {**run, "usage": recorder.usage.as_dict() if recorder is not None and call.when == "call"
                             else None}
    if call.when == "call" and recorder is not None and recorder.records:
        summary = recorder.summary(markers.group_of(item.nodeid, item.iter_markers("llm")))
        report.llm_metrics = summary
        # Names come from user code: escaped, so the JUnit XML stays well-formed whatever they contain.
        secrets = session_secrets(item.config)
        properties = [(f"llm:{printable(scrub(name, secrets))}", repr(m["mean"]))
                      for name, m in summary["metrics"].items()]
        report.user_properties.extend(properties)
        item.user_properties.extend(properties)
    return report


def model_cache(config: pytest.Config) -> ModelCache:
    """The run's models, one per spec, loaded on first use."""
    models = config.stash.get(MODELS_KEY, None)
    if models is None:
        from pytest_llmmetrics.providers.cache import ModelCache

        models = config.stash[MODELS_KEY] = ModelCache(config.rootpath, options.provider_options(config))
    return models


def redact_report(report: pytest.TestReport) -> None:
    """Secrets in a report's failure text and captured sections, redacted (read fresh: a test may set one)."""
    secrets = env_secrets()
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):  # a tuple is a skip's location
        text = str(report.longrepr)
        clean = scrub_cut(text, secrets)
        if clean != text:
            report.longrepr = clean
    report.sections = [(title, scrub_cut(content, secrets)) for title, content in report.sections]


@pytest.fixture
def llm_model_spec(request: pytest.FixtureRequest) -> str:
    """The model spec this test runs against: its ``@pytest.mark.llm(model=...)``, else its model in the
    model matrix, else ``--llm-model``, else the ``llm_model`` ini key, else ``local``.

    The model matrix parametrizes this fixture: an ``llm_model`` override that
    takes it runs once per model too (one that does not runs once).
    """
    item = request.node
    spec = getattr(request, "param", None)
    if spec is not None:
        marked = matrix.marked_model(list(item.iter_markers("llm")))
        if marked is not None:  # model= in a pytest.param's marks: one copy runs it, that model's if it has one
            specs = options.models(item.config)
            keep = marked if marked in specs else specs[0]
            if spec != keep:
                pytest.skip(f"this case names its model ({marked}) in its marks: it runs once, as its [{keep}] copy")
    return _test_settings(item).model


@pytest.fixture
def llm_model(llm_model_spec: str, request: pytest.FixtureRequest) -> Any:
    """The model the ``llm`` fixture calls: override it in conftest.py to plug in anything.

    Return any callable ``(messages, **params) -> str | Response``, or a model
    spec string (``"py:myapp.bot:reply"``, ``"openai:gpt-4o-mini"``). The default
    loads the model ``llm_model_spec`` names; with ``--llm-record-mode=none``, on its first call only, which
    a replay never makes (the model need not be importable or installed there).
    """
    models = model_cache(request.config)
    if options.get(request.config, "llm_record_mode") == "none":
        return models.lazy(llm_model_spec)
    return models.get(llm_model_spec)


@pytest.fixture
def llm(request: pytest.FixtureRequest, llm_model: Any) -> LLM:
    """The model under test with this test's ``@pytest.mark.llm`` settings.

    ``llm(prompt, **overrides)``, ``llm.chat(messages)``, ``llm.sample(prompt, n)``.
    With ``--llm-record-mode`` other than ``off``, replies are replayed and
    recorded here, whatever ``llm_model`` returns. Every answer is waited for
    at most ``--llm-timeout`` seconds.
    """
    from pytest_llmmetrics.llm import LLM

    config = request.config
    model = model_cache(config).resolve(llm_model)
    timeout = model_cache(config).options.timeout
    recordings = config.stash.get(RECORDINGS_KEY, None)
    if recordings is not None:
        model = recordings.wrap(model, request.node, timeout)
    recorder = recorder_for(request.node)
    return LLM(model, _test_settings(request.node), on_send=recorder.note_call, on_reply=recorder.note_reply,
               timeout=timeout)


@pytest.fixture
def allm(request: pytest.FixtureRequest, llm: LLM) -> AsyncLLM:
    """The ``llm`` fixture for async tests: ``await allm(prompt)``, ``await allm.chat(messages)``,
    ``await allm.sample(prompt, n)``.

    Same settings, recordings, timeouts and metrics as ``llm``; it runs on the test's own
    event loop (pytest-asyncio, or anyio's pytest plugin) and never starts one.
    """
    from pytest_llmmetrics.llm import AsyncLLM

    test = getattr(request.node, "function", None)
    if test is not None and not inspect.iscoroutinefunction(test) and "allm" in _arguments(test):
        # Called without await, allm's coroutines never run: a test using it so would pass without testing.
        raise ConfigError(f"{request.node.name} is not async: allm's methods are coroutines to await in an "
                          "async test (pytest-asyncio's @pytest.mark.asyncio, or anyio's @pytest.mark.anyio); "
                          "a sync test uses the llm fixture")
    return AsyncLLM(llm)


def _arguments(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _test_settings(item: pytest.Item) -> markers.LLMSettings:
    """This test's model settings: its ``llm`` markers (closest wins), then its model in the matrix, CLI, ini,
    default."""
    return markers.settings_from_marks(item.iter_markers("llm"),
                                       matrix.spec_of(item) or options.get(item.config, "llm_model"))


def recorder_for(item: pytest.Item) -> MetricsRecorder:
    """The test's metrics recorder, made on first use (by ``llm_metrics`` or ``llm_snapshot``)."""
    recorder = item.stash.get(RECORDER_KEY, None)
    if recorder is None:
        from pytest_llmmetrics.llm_metrics import MetricsRecorder

        config = item.config
        recorder = item.stash[RECORDER_KEY] = MetricsRecorder(lambda: metric_registry(config),
                                                               lambda spec: _judge_model(item, spec))
    return recorder


def _judge_model(item: pytest.Item, spec: str | None) -> Any:
    """A judged check's model for this test: its own ``model=``, else ``llm_judge_model``, else ``local``.

    Judge calls go through the test's recorded replies, timeout, retries and concurrency like ``llm``'s.
    """
    config = item.config
    chosen = spec or str(options.get(config, "llm_judge_model"))
    models = model_cache(config)
    recordings = config.stash.get(RECORDINGS_KEY, None)
    wrap = None if recordings is None else (lambda model: recordings.wrap(model, item, models.options.timeout))
    return models.judge_model(chosen, wrap)


@pytest.fixture
def llm_metrics(request: pytest.FixtureRequest) -> MetricsRecorder:
    """Record metrics (``record``) and check replies (``expect``) for this test."""
    return recorder_for(request.node)


@pytest.fixture
def llm_snapshot(request: pytest.FixtureRequest) -> Any:
    """A syrupy snapshot that compares meaning: ``assert reply == llm_snapshot``.

    Passes while the cosine similarity of the stored and the new text reaches
    the threshold (``llm_similarity_threshold``, or ``llm_snapshot(threshold=0.9)``);
    records the similarity as a metric. ``pytest --snapshot-update`` records it.
    """
    try:
        from pytest_llmmetrics.semantic.snapshot import make_assertion
    except ImportError:
        raise ConfigError(
            "llm_snapshot needs syrupy and sentence-transformers: pip install 'pytest-llmmetrics[semantic]'"
        ) from None
    return make_assertion(request, recorder_for(request.node))
