"""Server middleware: the labelling gate (one labelling request at a time) and the access log."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labelandlearn.server import AccessLog, _WaitressStop, default_app_factory, shutdown_app
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.web.gate import LabellingGate

ANSWERS = "/api/v1/projects/3/answers"
NEXT_ITEMS = "/api/v1/projects/3/items/next"


class CountingApp:
    """A WSGI app that records how many calls overlap; each call waits ``seconds``."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.running = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            self.running += 1
            self.max_concurrent = max(self.max_concurrent, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def serve_once(app: Callable[..., Any], path: str) -> bytes:
    """Call ``app`` as a WSGI server would: iterate the body, then close it."""
    body = app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda *_args: None)
    try:
        return b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def run_together(app: Callable[..., Any], paths: list[str]) -> list[bytes]:
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda path=path: results.append(serve_once(app, path)))
        for path in paths
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_runs_labelling_requests_one_at_a_time() -> None:
    inner = CountingApp()
    results = run_together(LabellingGate(inner), [ANSWERS, NEXT_ITEMS, ANSWERS, NEXT_ITEMS])
    assert results == [b"ok"] * 4
    assert inner.max_concurrent == 1


def test_leaves_other_requests_concurrent() -> None:
    inner = CountingApp(seconds=0.2)
    paths = ["/projects/3/label", "/api/v1/projects/3/answers/undo", "/api/v1/projects/3"]
    results = run_together(LabellingGate(inner), paths)
    assert results == [b"ok"] * 3
    assert inner.max_concurrent > 1


def test_holds_the_gate_until_the_body_is_closed() -> None:
    gate = LabellingGate(CountingApp(seconds=0))
    body = gate({"PATH_INFO": ANSWERS}, lambda *_args: None)
    second = threading.Thread(target=serve_once, args=(gate, NEXT_ITEMS))
    second.start()
    second.join(timeout=0.3)
    assert second.is_alive(), "a second labelling request ran before the first body closed"
    body.close()  # type: ignore[attr-defined]
    second.join(timeout=5)
    assert not second.is_alive()


def test_releases_the_gate_when_the_app_raises() -> None:
    def failing(_environ: dict[str, Any], _start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("broken view")

    gate = LabellingGate(failing)
    with pytest.raises(RuntimeError, match="broken view"):
        serve_once(gate, ANSWERS)
    gate.app = CountingApp(seconds=0)
    finished = threading.Thread(target=serve_once, args=(gate, ANSWERS))
    finished.start()
    finished.join(timeout=5)
    assert not finished.is_alive(), "the gate stayed locked after the app raised"


def test_closes_the_inner_body() -> None:
    closed: list[str] = []

    class Body(list[bytes]):
        def close(self) -> None:
            closed.append("inner")

    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [])
        return Body([b"a", b"b"])

    assert serve_once(LabellingGate(app), ANSWERS) == b"ab"
    assert closed == ["inner"]


FREEZE_IN_FRESH_PROCESS = """
import gc, sys
from labelandlearn.server import freeze_startup_objects
print("sklearn" in sys.modules, "labelandlearn.learning.classifiers" in sys.modules)
freeze_startup_objects()
print("sklearn" in sys.modules, "labelandlearn.learning.classifiers" in sys.modules)
print(gc.get_freeze_count())
"""


def test_freeze_startup_objects_hides_them_from_the_collector() -> None:
    # A fresh process, because this test process has imported the learning modules already.
    output = subprocess.run(
        [sys.executable, "-c", FREEZE_IN_FRESH_PROCESS],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split("\n")
    assert output[0] == "False False", "the server module imports scikit-learn by itself"
    # The learning modules that the first labelling request needs are imported before the freeze.
    assert output[1] == "True True"
    assert int(output[2]) > 10_000


def test_waitress_stop_falls_back_without_internals(caplog: pytest.LogCaptureFixture) -> None:
    stop = _WaitressStop(server=object())
    with pytest.raises(KeyboardInterrupt), caplog.at_level(logging.WARNING):
        stop.handle_signal(signal.SIGTERM, None)
    assert "stopping without waiting for requests" in caplog.text


def test_server_app_gates_labelling_on_sqlite_only(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, job_runner="inprocess")
    app: Any = default_app_factory(settings)()
    try:
        assert isinstance(app.wsgi_app, LabellingGate) is database_url.startswith("sqlite")
    finally:
        shutdown_app(app)


def test_access_log_writes_one_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("404 NOT FOUND", [])
        return [b"missing"]

    environ = {
        "PATH_INFO": "/api/v1/projects/9",
        "QUERY_STRING": "limit=1",
        "REQUEST_METHOD": "GET",
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    with caplog.at_level(logging.INFO, logger="labelandlearn.access"):
        body = AccessLog(app)(environ, lambda *_args: None)
    assert body == [b"missing"]
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith('127.0.0.1 "GET /api/v1/projects/9?limit=1 HTTP/1.1" 404 ')
    assert lines[0].endswith(" ms")
