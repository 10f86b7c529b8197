"""Run the labelling requests of a SQLite-backed server one at a time.

Every next-item and answer request writes to the database (a lease, an answer), and SQLite
lets one connection write at a time. Left to themselves, several request threads then wait
for the write lock in SQLite's busy handler, which sleeps and polls, while they hand the
interpreter lock back and forth at every statement. ``benchmarks/load_test.py`` (20
annotators, 200 answers/s, 2 cores, gunicorn with 4 request threads) measured 4.1 to 6.7 ms
of server CPU per answer and a p95 of 74 to 2,483 ms that way, against 4.0 to 4.5 ms and 29
to 240 ms with this gate. With one request thread the gate changes nothing.

The gate is a lock that a labelling request holds from the start of the application call
until the server has written the response body, so the next one starts as soon as the last
one is done. Other requests (pages, imports, exports) do not take it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Paths below the application root of the two requests an annotator sends per answer.
LABELLING_PATHS = re.compile(r"/api/v1/projects/\d+/(?:items/next|answers)")


class _ReleasingBody:
    """The response body, which releases the gate once the server has closed it."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class LabellingGate:
    """WSGI middleware that serialises the requests whose path matches ``paths``."""

    def __init__(self, app: WsgiApp, paths: re.Pattern[str] = LABELLING_PATHS) -> None:
        self.app = app
        self.paths = paths
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.paths.fullmatch(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        self._lock.acquire()
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._lock.release()
            raise
        # WSGI servers call close() on the body after sending it, also when sending fails.
        return _ReleasingBody(body, self._lock.release)
