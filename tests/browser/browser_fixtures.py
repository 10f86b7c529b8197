"""Fixtures of the browser tests: the real app served on a free 127.0.0.1 port, and Chromium.

The server runs in a thread of the test process with werkzeug's threaded WSGI server, the
default in-process job runner and a temporary data folder. Test modules import these fixtures
by name, because a conftest.py here would hide the top-level one (both import as ``conftest``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from labelandlearn.settings import get_settings
from labelandlearn.storage.db import Database
from labelandlearn.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@dataclass
class LiveServer:
    url: str
    db: Database
    data_dir: Path


@dataclass
class PageEvents:
    """What a page did that a test may want to forbid: dialogs, errors, requests."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def live_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LABELANDLEARN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LABELANDLEARN_SECRET_KEY", "browser-tests-secret")
    get_settings.cache_clear()
    settings = get_settings()
    db = Database(settings.resolved_database_url)
    app = create_app(settings, db=db)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", db, data_dir)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["labelandlearn"].runner.shutdown(wait=True)
        db.dispose()
        get_settings.cache_clear()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium package to run this test")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed; pip install '.[test]'"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def watch(page: Any) -> PageEvents:
    """Record the page's dialogs (dismissed at once), script errors and requests."""
    events = PageEvents()

    def on_dialog(dialog: Any) -> None:
        events.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: events.errors.append(str(error)))
    page.on(
        "console",
        lambda message: events.errors.append(message.text) if message.type == "error" else None,
    )
    page.on("request", lambda request: events.requests.append(request.url))
    return events


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
