"""Recorded replies (``--llm-record-mode``): replayed instead of calling the model, merged into ``__recordings__/``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import threading
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_llmmetrics.display import show_path
from pytest_llmmetrics.errors import ConfigError, ModelError
from pytest_llmmetrics.files import atomic_write_text, load_json, read_text
from pytest_llmmetrics.matrix import plain_nodeid, spec_of
from pytest_llmmetrics.providers.call import acall_model, call_model
from pytest_llmmetrics.providers.spec import model_name
from pytest_llmmetrics.redact import env_secrets, safe_params, scrub
from pytest_llmmetrics.response import Response, field_problem

FORMAT = "pytest-llmmetrics recordings 1"
ABOUT = ("Replies of the model under test, keyed by model, messages and parameters. Written by "
         "pytest --llm-record-mode=once|new_episodes|all; replayed by --llm-record-mode=none. Review like code.")
DIRNAME = "__recordings__"
REPLY_FIELDS = ("latency_s", "prompt_tokens", "completion_tokens", "finish_reason")
PENDING_KEY = pytest.StashKey["list[dict[str, Any]]"]()


def recording_path(module: Path) -> Path:
    """Where the replies of the tests in ``module`` are recorded."""
    return module.parent / DIRNAME / f"{module.stem}.llm.json"


def request_key(model: str, messages: list[dict[str, str]], params: Mapping[str, Any]) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# --- the file format -----------------------------------------------------------------
# Pretty-printed JSON; a text with line breaks is stored as a list of its lines so
# that a changed reply reads as changed lines in a diff.

def _pack(text: str) -> str | list[str]:
    return text.split("\n") if "\n" in text else text


def _unpack(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    raise ValueError(f"{where} must be a string or a list of lines")


def dump(entries: Mapping[str, Mapping[str, Any]]) -> str:
    ordered = sorted(entries.values(), key=lambda e: (e["test"], e["key"]))
    secrets = env_secrets()

    def text(value: str) -> str | list[str]:
        return _pack(scrub(value, secrets))  # redacted whole, before it is split into lines

    out = []
    for e in ordered:
        out.append({
            "key": e["key"],
            "test": e["test"],
            "model": e["model"],
            "params": e["params"],
            "messages": [{"role": m["role"], "content": text(m["content"])} for m in e["messages"]],
            "replies": [{"text": text(r["text"]), **{f: r.get(f) for f in REPLY_FIELDS}} for r in e["replies"]],
        })
    data = scrub({"format": FORMAT, "about": ABOUT, "recordings": out}, secrets)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def load(path: Path) -> dict[str, dict[str, Any]]:
    """A recording file's entries by key; a broken file is a `ConfigError` naming file and line.

    Two recordings of one request, or a field twice in one object (what a git
    merge that kept both sides leaves), are an error naming both lines: which
    one is right is for a person to say, never a silent last-wins.
    """
    text = read_text(path, _FIX)
    data = load_json(text, path, _FIX)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("recordings"), list):
        raise ConfigError(f"{path}:1: not a pytest-llmmetrics recording file (format {FORMAT!r}). {_FIX}")
    entries: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(data["recordings"]):
        try:
            entry = _entry(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            key = raw.get("key") if isinstance(raw, dict) else None
            raise ConfigError(f"{path}:{_line_of(text, key)}: recording {i} is malformed: {exc}. {_FIX}") from None
        twin = entries.get(entry["key"])
        if twin is not None:
            first, second = _key_lines(text, entry["key"])
            raise ConfigError(
                f"{path}:{second}: a second recording of the request recorded on line {first} (key "
                f"{entry['key']!r}, tests {twin['test']!r} and {entry['test']!r}), as a git merge that kept both "
                f"sides leaves it. Keep the entry you want and delete the other. {_FIX}"
            )
        entries[entry["key"]] = entry
    return entries


def _key_lines(text: str, key: str) -> tuple[int, int]:
    """The lines of the first two ``"key": "<key>"`` fields in ``text``."""
    found = [text.count("\n", 0, m.start()) + 1
             for m in re.finditer(r'"key"\s*:\s*' + re.escape(json.dumps(key)), text)] + [1, 1]
    return found[0], found[1]


_FIX = "Fix it by hand (git diff shows what changed), or delete it and record again; it is left untouched"


def _entry(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("it must be an object")
    for name, kind in (("key", str), ("test", str), ("model", str), ("params", dict), ("messages", list),
                       ("replies", list)):
        if not isinstance(raw.get(name), kind):
            raise ValueError(f"'{name}' must be a {kind.__name__}")
    messages = [{"role": str(m["role"]), "content": _unpack(m["content"], "message content")}
                for m in raw["messages"]]
    replies = []
    for r in raw["replies"]:
        reply = {"text": _unpack(r["text"], "reply text")}
        for f in REPLY_FIELDS:
            problem = field_problem(f, r.get(f))  # one rule with Response: a replayed reply is a reply
            if problem:
                raise ValueError(f"reply field {problem}")
            reply[f] = r.get(f)
        replies.append(reply)
    return {"key": raw["key"], "test": raw["test"], "model": raw["model"], "params": raw["params"],
            "messages": messages, "replies": replies}


def _line_of(text: str, key: Any) -> int:
    if isinstance(key, str):
        at = text.find(json.dumps(key))
        if at >= 0:
            return text.count("\n", 0, at) + 1
    return 1


# --- merging a session's recordings into a file --------------------------------------

@dataclass(frozen=True)
class Merged:
    """One recording file after a session: its entries, and the counts its summary line gives."""

    entries: dict[str, dict[str, Any]]
    added: int  # replies recorded
    removed: int  # requests that tests which ran no longer send ("all")
    # Something was recorded or removed, so the file is written (even if every recorded reply was there already).
    changed: bool


def merge(old: Mapping[str, dict[str, Any]], recorded: Mapping[str, Mapping[str, Any]], ran: Collection[str],
          mode: str) -> Merged:
    """The entries of one recording file after this session, under the rules of ``mode``.

    ``old``: the file's entries by key (``{}`` for a new file). ``recorded``:
    what tests recorded into it, by key, each with its replies by episode
    index. ``ran``: the ids of the tests that ran (only ``all`` looks at them).

    With ``all``, a test that ran replaces what it had recorded: its requests
    are recorded afresh, and those it no longer sends are removed (a request
    that another test sent again stays). Entries of tests that did not run
    stay. Otherwise (``new_episodes``; ``once``, which records only modules
    with no file) recorded episodes stay and only those past their end are
    added. ``old`` and ``recorded`` are left as they are.
    """
    stale = {key for key, entry in old.items() if entry["test"] in ran and key not in recorded} \
        if mode == "all" else set()
    entries = {key: entry for key, entry in old.items() if key not in stale}
    added = 0
    for key, fresh in recorded.items():
        episodes = sorted(fresh["replies"].items())
        was = entries.get(key)
        if mode == "all" or was is None:
            entries[key] = {**fresh, "replies": [reply for _, reply in episodes]}
            added += len(episodes)
        else:  # new episodes: keep the recorded ones, add those past their end
            more = [reply for index, reply in episodes if index >= len(was["replies"])]
            entries[key] = {**was, "replies": was["replies"] + more}
            added += len(more)
    return Merged(entries, added, len(stale), changed=bool(recorded or stale))


# --- replay and record ---------------------------------------------------------------

class Recordings:
    """One per process: reads recording files on demand; the writer merges and writes them at the end.

    - ``off`` -- no recordings; always call the model (the default).
    - ``none`` -- replay only; a request with no recorded reply fails its test.
    - ``once`` -- a test module with no recording file yet is recorded; one with a
      file is replayed only.
    - ``new_episodes`` -- replay what is recorded, call the model for the rest and
      record it.
    - ``all`` -- call the model for everything and overwrite the recorded replies.

    One file per test module, next to it: ``__recordings__/<module>.llm.json``.
    Entries are keyed by model spec + messages + parameters; the i-th identical
    request within one test gets the i-th recorded reply (its "episodes"), so a
    test that asks the same thing three times at temperature 0.7 replays three
    different replies. Replies keep their recorded latency and token counts.

    Only one process writes: xdist workers send what they recorded on their test
    reports, and the controller (or the single process of a serial run) merges it
    into each file once, at the end of the session, atomically. A file that cannot
    be parsed fails the tests that need it, naming file and line, and is never
    overwritten. With ``all``, a test that ran replaces everything it had
    recorded: requests it no longer sends are removed. Tests that did not run
    (deselected, ``-k``) keep their entries, and ``new_episodes`` only ever adds.

    No secret is written (see `redact`): parameters whose names look like keys
    or tokens are stored (and keyed) as ``<redacted>``, and credentials and
    secret-looking values of secret-named environment variables are replaced
    wherever they would appear; a replay gives back the text as stored.
    """

    def __init__(self, config: pytest.Config, mode: str, *, writer: bool) -> None:
        self.config = config
        self.mode = mode
        self.writer = writer
        self._loaded: dict[Path, dict[str, dict[str, Any]] | ConfigError] = {}
        self._existed: dict[Path, bool] = {}
        self._lock = threading.Lock()
        self._new: dict[str, dict[str, dict[str, Any]]] = {}  # file -> key -> entry with replies by index
        self._ran: dict[str, set[str]] = {}  # file -> tests that ran in this session (mode "all")
        self.written: list[str] = []
        self.skipped: list[str] = []

    def wrap(self, model: Any, item: pytest.Item, timeout: float | None = None) -> RecordingModel:
        """``model`` for ``item``, replayed and recorded as the mode says; ``timeout`` limits each real call."""
        sender = Sender(recording_path(item.path), plain_nodeid(item.nodeid, item.config), item.config.rootpath,
                        item.config.invocation_params.dir,
                        f"pytest '{_command_id(item)}'{_matrix_flags(item)} --llm-record-mode=new_episodes")
        return self.wrap_for(model, sender, item.stash.setdefault(PENDING_KEY, []), timeout)

    def wrap_for(self, model: Any, sender: Sender, pending: list[dict[str, Any]],
                 timeout: float | None = None) -> RecordingModel:
        """``model`` for ``sender``; what it records is appended to ``pending`` (handed to `collect` later)."""
        return RecordingModel(model, self, sender, pending, timeout)

    def entries(self, path: Path) -> dict[str, dict[str, Any]]:
        with self._lock:
            if path not in self._loaded:
                self._existed[path] = path.exists()  # a directory in the way is an error below, not "no file"
                try:
                    self._loaded[path] = load(path) if self._existed[path] else {}
                except ConfigError as exc:
                    self._loaded[path] = exc
            got = self._loaded[path]
        if isinstance(got, ConfigError):
            raise got
        return got

    def existed(self, path: Path) -> bool:
        self.entries(path)
        return self._existed[path]

    # Writer side (controller or serial process).

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.writer:  # an xdist worker: its reports go to the controller, which writes
            return
        ran = (self._file_of(report.fspath), plain_nodeid(report.nodeid, self.config)) if report.when == "call" \
            else None
        self.collect(getattr(report, "llm_recordings", None) or (), ran)

    def collect(self, recorded: Collection[dict[str, Any]], ran: tuple[str, str] | None = None) -> None:
        """Take what a test recorded (``RecordingModel``'s pending list); ``ran``: ``(its file, its id)`` when
        it ran to the end, for ``all`` to remove the requests it no longer sends."""
        if self.mode == "all" and ran is not None:
            self._ran.setdefault(ran[0], set()).add(ran[1])
        for rec in recorded:
            entry = self._new.setdefault(rec["file"], {}).setdefault(rec["key"], {
                "key": rec["key"], "test": rec["test"], "model": rec["model"], "params": rec["params"],
                "messages": rec["messages"], "replies": {},
            })
            entry["replies"].setdefault(rec["index"], rec["reply"])  # the first recorded episode wins

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.writer:
            self.write()

    def write(self) -> None:
        """Merge what was collected into each recording file, atomically; ``written``/``skipped`` say how it went."""
        root = self.config.rootpath
        for file in sorted(set(self._new) | set(self._ran)):
            recorded, ran = self._new.get(file, {}), self._ran.get(file, set())
            path = root / file
            if not recorded and not path.exists():
                continue
            try:
                old = load(path) if path.exists() else {}
            except ConfigError as exc:
                self.skipped.append(f"{file} NOT updated: {exc}")
                continue
            merged = merge(old, recorded, ran, self.mode)
            if not merged.changed:
                continue
            try:
                atomic_write_text(path, dump(merged.entries))
            except OSError as exc:  # the end of a run never crashes: say so, keep the exit status
                where = f" ({exc.filename})" if isinstance(exc.filename, str) else ""
                self.skipped.append(f"{file} NOT updated: could not write it: {exc.strerror or type(exc).__name__}"
                                    f"{where}")
                continue
            line = f"{file}: {merged.added} repl{'y' if merged.added == 1 else 'ies'} recorded"
            if merged.removed:
                line += f", {merged.removed} request{'s' if merged.removed > 1 else ''} no longer sent removed"
            self.written.append(line)

    def _file_of(self, module: str) -> str:
        """The recording file of a test module given relative to the rootdir, as recorded replies name it."""
        path = Path(os.path.normpath(self.config.rootpath / module))
        return show_path(recording_path(path), self.config.rootpath)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written or self.skipped:
            terminalreporter.write_sep("-", "llm recordings")
            for line in self.written + self.skipped:
                terminalreporter.write_line(line)


def attach(item: pytest.Item, report: pytest.TestReport) -> None:
    """Move the replies this test recorded so far onto its report (the way to the writing process)."""
    pending = item.stash.get(PENDING_KEY, None)
    if pending:
        report.llm_recordings = list(pending)  # type: ignore[attr-defined]
        pending.clear()


@dataclass(frozen=True)
class Sender:
    """Who sends the requests a `RecordingModel` replays and records: a test, or a calibration."""

    path: Path  # its recording file
    test: str  # its id, stored with each entry
    rootpath: Path  # recording files are named relative to it
    start: Path  # where the command ran: paths in messages are shown from there
    record_with: str  # the command that records a reply found missing


class RecordingModel:
    """Wraps the model under test: replays recorded replies, records new ones, as the mode says.

    It applies the timeout to the model it wraps itself, so that a call given up
    on is never recorded, even when its answer comes late.
    """

    enforces_timeout = True

    def __init__(self, inner: Any, recordings: Recordings, sender: Sender, pending: list[dict[str, Any]],
                 timeout: float | None = None) -> None:
        self.inner = inner
        self.timeout = timeout
        self.spec = model_name(inner)
        self.max_concurrency = getattr(inner, "max_concurrency", 1)
        self._recordings = recordings
        self._sender = sender
        self._path = sender.path
        self._pending = pending
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<recorded {self.spec} ({self._recordings.mode})>"

    is_async = True  # under allm, replays never leave the event loop; a real call goes to the inner model

    def __call__(self, messages: list[dict[str, str]], **params: Any) -> Response:
        replayed, request = self._replay(messages, params)
        if replayed is not None:
            return replayed
        response = call_model(self.inner, self.spec, messages, params, self.timeout)
        self._record(request, messages, response)
        return response

    async def acall(self, messages: list[dict[str, str]], **params: Any) -> Response:
        """The same under the ``allm`` fixture: the real call through `acall_model`."""
        replayed, request = self._replay(messages, params)
        if replayed is not None:
            return replayed
        response = await acall_model(self.inner, self.spec, messages, params, self.timeout)
        self._record(request, messages, response)
        return response

    def _replay(self, messages: list[dict[str, str]], params: dict[str, Any]) -> tuple[Response | None,
                                                                                       tuple[str, int, Any]]:
        """The recorded reply to this request, if the mode replays it; else None (call the model).

        Also the request's key, episode and stored parameters, for `_record`. A request the mode
        must replay and cannot is a `ModelError` saying how to record it.
        """
        stored_params = safe_params(params)
        key = request_key(self.spec, messages, stored_params)
        with self._lock:  # llm.sample may call from several threads
            index = self._counts[key]
            self._counts[key] += 1
        mode = self._recordings.mode
        if mode != "all":
            entries = self._recordings.entries(self._path)
            entry = entries.get(key)
            if entry is not None and index < len(entry["replies"]):
                reply = entry["replies"][index]
                return Response(text=reply["text"], model=self.spec,
                                **{f: reply.get(f) for f in REPLY_FIELDS}), (key, index, stored_params)
            if mode == "none" or (mode == "once" and self._recordings.existed(self._path)):
                raise ModelError(self._missing(messages, stored_params, entries, entry, index))
        return None, (key, index, stored_params)

    def _record(self, request: tuple[str, int, Any], messages: list[dict[str, str]], response: Response) -> None:
        key, index, stored_params = request
        reply = {"text": response.text, **{f: getattr(response, f) for f in REPLY_FIELDS}}
        with self._lock:
            self._pending.append({
                "file": show_path(self._path, self._sender.rootpath),  # as the summary names it
                "key": key, "index": index, "test": self._sender.test, "model": self.spec,
                "params": stored_params, "messages": [dict(m) for m in messages], "reply": reply,
            })

    def _missing(self, messages: list[dict[str, str]], params: dict[str, Any],
                 entries: Mapping[str, dict[str, Any]], entry: dict[str, Any] | None, index: int) -> str:
        mode = self._recordings.mode
        start = self._sender.start  # as the command below, from where it was started
        prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
        shown = prompt if len(prompt) <= 200 else prompt[:197] + "..."
        why = ("--llm-record-mode=none replays only" if mode == "none" else
               "the file exists, so --llm-record-mode=once replays only")
        lines = [f"no recorded reply for this request in {show_path(self._path, start)} ({why})",
                 f"  test:   {self._sender.test}", f"  model:  {self.spec}", f"  prompt: {shown!r}"]
        if entry is not None:
            lines.append(f"  this test sends it {index + 1} times; {len(entry['replies'])} repl"
                         f"{'y is' if len(entry['replies']) == 1 else 'ies are'} recorded")
        else:
            near = [e for e in entries.values() if e["messages"] and e["messages"][-1]["content"] == prompt]
            if near:
                lines.append("  a reply to this prompt is recorded with other settings: "
                             + _difference(near[0], self.spec, messages, params))
        lines += ["Record it with:", f"  {self._sender.record_with}"]
        return "\n".join(lines)


def _command_id(item: pytest.Item) -> str:
    """The test's id as typed from where pytest was started (the rootdir may be a subfolder)."""
    start = item.config.invocation_params.dir
    _, sep, rest = plain_nodeid(item.nodeid, item.config).partition("::")
    try:
        path = Path(os.path.relpath(item.path, start)).as_posix()
    except ValueError:  # another drive (Windows)
        return item.nodeid
    return path + sep + rest


def _matrix_flags(item: pytest.Item) -> str:
    """The models of a matrix given on the command line: without them the test id would not be found."""
    given = item.config.getoption("llm_model", None)
    if spec_of(item) is None or not given:
        return ""
    return "".join(f" --llm-model {shlex.quote(spec)}" for spec in dict.fromkeys(given))


def _difference(entry: Mapping[str, Any], model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    diffs = []
    if entry["model"] != model:
        diffs.append(f"model {entry['model']!r} (now {model!r})")
    for name in sorted(set(entry["params"]) | set(params)):
        was, now = entry["params"].get(name), params.get(name)
        if was != now:
            diffs.append(f"{name}={was!r} (now {now!r})")
    if entry["messages"][:-1] != messages[:-1]:
        diffs.append("the system prompt or earlier messages differ")
    return ", ".join(diffs) or "the messages differ"
