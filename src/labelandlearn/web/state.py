"""Per-application objects shared by request handlers: database, job runner, model cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from labelandlearn.jobs.base import JobRunner
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database


@dataclass
class AppState:
    settings: Settings
    db: Database
    runner: JobRunner
    models: Any  # labelandlearn.learning.online.ModelCache
    local_user_id: int
    login_limiter: Any  # labelandlearn.auth.ratelimit.LoginRateLimiter
    # One-time token that the first-run page asks for before creating the first admin.
    setup_token: str | None = None


def state() -> AppState:
    """Return the state of the application serving the current request."""
    app_state: AppState = current_app.extensions["labelandlearn"]
    return app_state
