"""Engine and session factory, SQLite pragmas and schema upgrades through Alembic."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger(__name__)

# Connections kept open in the pool: at least the server's request threads (4 by default,
# see labelandlearn.server) plus its job threads. With a smaller pool, busy requests open and
# close overflow connections, which runs the SQLite pragmas or a PostgreSQL login each time.
POOL_SIZE = 20
POOL_OVERFLOW = 20

# PostgreSQL connections are replaced after this many seconds, before a server or proxy idle
# timeout closes them.
POOL_RECYCLE_S = 1800
# A PostgreSQL connection that sat in the pool longer than this is pinged at checkout. A ping on
# every checkout (pool_pre_ping) costs one round trip, and a request checks out a connection
# twice. Under load, connections go back into use within milliseconds and skip the ping.
PING_AFTER_IDLE_S = 10.0
_CHECKED_IN_AT = "checked_in_at"

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the labelling screen) go on while a job writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A page cache of 64 MiB per connection (negative values are KiB) and memory-mapped reads
    # keep the queue's index scans of a 100,000-item project off the read() system call.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA mmap_size=268435456")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def _ping_idle_connections(engine: Engine) -> None:
    """Ping connections that were idle in the pool; replace those that fail.

    Raising ``DisconnectionError`` at checkout makes the pool discard the connection and
    check out a new one, so a database restart costs no failed request once the connections
    have idled. A connection dropped while in steady use still fails its statement; SQLAlchemy
    then invalidates the pool's older connections, so only that request fails.
    """
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            logger.warning("replacing a pooled database connection that failed a ping: %s", error)
            raise DisconnectionError(f"pooled connection failed a ping: {error}") from error

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if parsed.database and parsed.database != ":memory:":
                kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
        else:
            kwargs.update(
                pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=POOL_RECYCLE_S
            )
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _configure_sqlite)
        else:
            _ping_idle_connections(self.engine)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session that commits on success and rolls back on any error."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self) -> None:
        """Create the schema or upgrade an older database to the newest migration."""
        upgrade_schema(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection_engine"] = engine
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    logger.debug("database schema at %s", revision)
