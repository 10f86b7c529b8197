"""Fixtures of the web tests: an app on a temporary data folder, with CSRF on.

Test modules import these fixtures by name. A conftest.py here would be imported as the module
``conftest`` and hide the top-level one, whose ``dataset_path`` other test folders import.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from labelandlearn.jobs.inprocess import SynchronousRunner
from labelandlearn.settings import Settings, get_settings
from labelandlearn.storage.db import Database
from labelandlearn.web.app import create_app


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings on a temporary data folder, also seen by jobs that call get_settings()."""
    monkeypatch.setenv("LABELANDLEARN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELANDLEARN_MAX_UPLOAD_MB", "1")
    monkeypatch.setenv("LABELANDLEARN_SECRET_KEY", "web-tests-secret")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.resolved_database_url)
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def app(settings: Settings, database: Database) -> Flask:
    return create_app(
        settings, db=database, runner=SynchronousRunner(database), config={"TESTING": True}
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
