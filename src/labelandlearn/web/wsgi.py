r"""Entry points for WSGI servers other than ``labelandlearn serve``.

Use the factory, and run ONE process, because the job runner and the model cache live in the
process that serves requests::

    waitress-serve --listen 127.0.0.1:8000 --threads 4 --call labelandlearn.web.wsgi:create_wsgi_app
    gunicorn --workers 1 --threads 4 --bind 127.0.0.1:8000 \
        'labelandlearn.web.wsgi:create_wsgi_app()'

``application`` is the same app for servers that need a module attribute. It is built on the
first request, so importing this module has no side effects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from labelandlearn.settings import get_settings

_lock = threading.Lock()
_app: Flask | None = None


def create_wsgi_app() -> Flask:
    """Build the application from the ``LABELANDLEARN_*`` environment settings, as
    ``labelandlearn serve`` runs it (labelling requests one at a time on SQLite)."""
    from labelandlearn.server import build_served_app

    return build_served_app(get_settings())


def _get_app() -> Flask:
    global _app
    with _lock:
        if _app is None:
            _app = create_wsgi_app()
        return _app


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI callable that builds the application on the first request."""
    return _get_app()(environ, start_response)
