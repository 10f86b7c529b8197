"""Shared fixtures: a migrated database on SQLite and, where reachable, on PostgreSQL."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from labelandlearn.storage.db import Database
from shared_data import DATASETS, REPO_ROOT, dataset_path  # noqa: F401 - re-exported

# The default model uses e5 embeddings. Embedding every imported item in the background would
# load the e5 model in many tests, so imports start no embed job here. The tests of the embed
# job turn it back on.
os.environ["LABELANDLEARN_EMBEDDINGS"] = "off"
# Training the default model looks up embeddings in the data folder; tests never touch the
# user's own folder.
os.environ.setdefault("LABELANDLEARN_DATA_DIR", tempfile.mkdtemp(prefix="labelandlearn-tests-"))

POSTGRES_URL = os.environ.get(
    "LABELANDLEARN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _restore_settings_environment() -> Iterator[None]:
    """Undo the LABELANDLEARN_ variables that a CLI run exports for its options."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("LABELANDLEARN_")}
    yield
    for key in [key for key in os.environ if key.startswith("LABELANDLEARN_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)
    from labelandlearn.settings import get_settings

    get_settings.cache_clear()


def _postgres_reachable() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres_reachable() -> bool:
    return _postgres_reachable()


def _postgres_schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_reachable: bool
) -> Iterator[str]:
    """Yield the URL of an empty database: a SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not postgres_reachable:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable; CI must start it")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """Yield a migrated database, on SQLite and on PostgreSQL."""
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """Yield a migrated SQLite database, for tests that need only one backend."""
    database = Database(f"sqlite:///{tmp_path / 'test.db'}")
    database.upgrade()
    yield database
    database.dispose()
