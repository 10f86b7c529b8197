"""Application settings, read once from the environment with the ``LABELANDLEARN_`` prefix."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Return the per-user data folder (XDG on Linux, the usual places elsewhere)."""
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif os.uname().sysname == "Darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "labelandlearn"


# Environment variables that set a setting start with this, e.g. LABELANDLEARN_DATA_DIR.
ENV_PREFIX = "LABELANDLEARN_"


class Settings(BaseSettings):
    """Every setting of the application; each field is also ``LABELANDLEARN_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for the SQLite database, the demo data cache and uploads.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy database URL, for example postgresql+psycopg://user@host/db. "
            "Default: SQLite file labelandlearn.db in the data folder."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the web server binds to.")
    accounts: bool = Field(
        default=False,
        description=(
            "Require login with accounts and roles. Without it the server runs in single-user "
            "mode, which only binds and answers 127.0.0.1."
        ),
    )
    port: int = Field(default=8000, description="Port the web server listens on.")
    secret_key: str | None = Field(
        default=None,
        description=(
            "Key that signs session cookies and CSRF tokens. Default: a random key created "
            "once and stored in the data folder (file secret_key, mode 0600)."
        ),
    )
    max_upload_mb: int = Field(
        default=200, ge=1, description="Largest accepted upload, in megabytes."
    )
    job_runner: Literal["inprocess", "celery"] = Field(
        default="inprocess",
        description="Where background jobs run: worker threads of the web process, or Celery.",
    )
    job_threads: int = Field(
        default=2, ge=1, description="Worker threads for the in-process job runner."
    )
    job_isolation: Literal["process", "thread"] = Field(
        default="process",
        description=(
            "How the in-process runner runs a job: in a child process (training never slows "
            "down labelling requests) or in the worker thread itself."
        ),
    )
    embeddings: Literal["background", "off"] = Field(
        default="background",
        description=(
            "Whether an import into a project whose model uses sentence embeddings starts a "
            "background job that embeds its items. With off, such models train on TF-IDF alone "
            "until the job is started from the dashboard."
        ),
    )
    celery_broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker URL (celery runner)."
    )
    log_level: str = Field(default="INFO", description="Logging level of the server and CLI.")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'labelandlearn.db'}"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings of this process, read from the environment on first use."""
    return Settings()
