"""Servers on 127.0.0.1 for provider tests: the real llama.cpp server, and a scripted fault injector."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A port nothing listens on now (bound and closed again): for a server about to bind it. Another
    process may take it meanwhile (`LlamaServer.started` retries); for a port that must refuse, use
    `refused_port`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port that refuses every connection while the block runs: bound and never listening, so no other
    process can take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` serving a GGUF on a free loopback port (one thread: it shares few cores)."""

    def __init__(self, model: Path, log: Path, n_threads: int | None = 1) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._log = log.open("wb")
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "2048", "--seed", "0",
             *(["--n_threads", str(n_threads)] if n_threads else [])],
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    @classmethod
    def started(cls, model: Path, log: Path, n_threads: int | None = 1, attempts: int = 3) -> LlamaServer:
        """A server that answers, on a port taken by no other process: `free_port` can hand out a port that
        another process binds first while this one imports, so a start that finds its port in use tries again."""
        for attempt in range(1, attempts + 1):
            server = cls(model, log.with_name(f"{log.stem}-{attempt}{log.suffix}") if attempt > 1 else log,
                         n_threads)
            try:
                server.wait_ready()
                return server
            except RuntimeError as exc:
                server.stop()
                if attempt == attempts or "address already in use" not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited ({self.proc.returncode}):\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not answer within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def completion(text: str, model: str = "fault", prompt_tokens: int = 11, completion_tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


@dataclass
class Seen:
    """One request as the fault server saw it."""

    at: float
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FaultServer:
    """A scripted OpenAI-compatible server: each request takes the next action of the script.

    Actions: ``("ok", text)``, ``("status", code, headers, message)``, ``("hang", seconds)``,
    ``("delay", seconds, text)`` and ``("garbage",)`` (a 200 that is not JSON).
    When the script runs out, ``default`` answers. Every request is kept in ``seen``.
    """

    def __init__(self, script: list[tuple[Any, ...]] | None = None,
                 default: tuple[Any, ...] = ("ok", "fine")) -> None:
        self.script = list(script or [])
        self.default = default
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests it was answering at once
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "fault", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.seen.append(Seen(time.monotonic(), body, {k.lower(): v for k, v in self.headers.items()}))
                    action = server.script.pop(0) if server.script else server.default
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                    server._changed.notify_all()
                self._answering = True
                try:
                    self._act(action, body)
                finally:
                    self._done()

            def _done(self) -> None:
                # A request stops being in flight once its reply starts to go out, not after: the client may
                # read the reply and send its next request before this thread gets to count it done.
                if getattr(self, "_answering", False):
                    self._answering = False
                    with server._lock:
                        server.in_flight -= 1
                        server._changed.notify_all()

            def _act(self, action: tuple[Any, ...], body: dict[str, Any]) -> None:
                kind = action[0]
                if kind == "ok":
                    self._send(200, completion(action[1], body.get("model", "fault")))
                elif kind == "together":
                    # ("together", k, total, text): hold each request until k are in flight at once (or all
                    # `total` have arrived): a client that sends k at a time reaches k whatever the timing,
                    # one that sends fewer never does (the 10 s cap only keeps a broken client from hanging).
                    _, k, total, text = action
                    with server._lock:
                        server._changed.wait_for(lambda: server.most_in_flight >= k or len(server.seen) >= total, 10)
                    self._send(200, completion(text, body.get("model", "fault")))
                elif kind == "refuse_json_schema":
                    # ("refuse_json_schema", k, text): a server that takes no json_schema response format. Such
                    # requests are held until k are in flight at once (or 10 s), then answered with a 500 naming
                    # response_format, as llama-cpp-python's server does; every other request gets `text`.
                    _, k, text = action
                    if (body.get("response_format") or {}).get("type") == "json_schema":
                        with server._lock:
                            server._changed.wait_for(lambda: server.most_in_flight >= k, 10)
                        self._send(500, {"error": {"message": "response_format.type: Input should be 'text' or "
                                                              "'json_object'", "type": "fault"}})
                    else:
                        self._send(200, completion(text, body.get("model", "fault")))
                elif kind == "delay":
                    time.sleep(action[1])
                    self._send(200, completion(action[2], body.get("model", "fault")))
                elif kind == "status":
                    code, headers = action[1], (action[2] if len(action) > 2 else {})
                    message = action[3] if len(action) > 3 else f"scripted {code}"
                    if code == 401:  # like OpenAI, which quotes the key it rejected
                        message += f" (incorrect API key provided: {self.headers.get('authorization', '')[7:]})"
                    self._send(code, {"error": {"message": message, "type": "fault"}}, headers)
                elif kind == "hang":
                    server._release.wait(action[1])
                elif kind == "garbage":
                    self._send_raw(200, b"<html>not json</html>", "text/html")

            def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send_raw(code, json.dumps(payload).encode(), "application/json", headers)

            def _send_raw(self, code: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
                self._done()
                try:
                    self.send_response(code)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def wait_seen(self, n: int, timeout: float = 10) -> int:
        """Wait until the server has taken ``n`` requests (a client that timed out may not have waited for the
        server to read its request), and return how many it has."""
        with self._lock:
            self._changed.wait_for(lambda: len(self.seen) >= n, timeout)
            return len(self.seen)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
