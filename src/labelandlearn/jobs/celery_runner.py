"""Runs the same jobs on Celery workers with Redis, for deployments with many users.

Start workers with ``celery -A labelandlearn.jobs.celery_worker worker``; they read the same
``LABELANDLEARN_DATABASE_URL`` and ``LABELANDLEARN_CELERY_BROKER_URL`` as the web server.
"""

from __future__ import annotations

from typing import Any

from labelandlearn.errors import MissingExtraError
from labelandlearn.jobs.base import create_job, run_job
from labelandlearn.settings import get_settings
from labelandlearn.storage.db import Database

try:
    from celery import Celery
except ImportError:  # pragma: no cover - depends on the installed extras
    Celery = None


def make_celery(broker_url: str) -> Any:
    if Celery is None:
        raise MissingExtraError(
            "the celery job runner needs Celery; "
            "install it with: pip install 'labelandlearn[celery]'"
        )
    app = Celery("labelandlearn", broker=broker_url, backend=None)
    app.conf.task_acks_late = True
    app.conf.worker_prefetch_multiplier = 1
    app.conf.task_ignore_result = True

    @app.task(name="labelandlearn.run_job")
    def run_job_task(job_id: str) -> None:
        run_job(Database(get_settings().resolved_database_url), job_id)

    return app


class CeleryRunner:
    def __init__(self, db: Database, broker_url: str) -> None:
        self.db = db
        self.app = make_celery(broker_url)

    def submit(
        self, kind: str, project_id: int | None, params: dict[str, Any] | None = None
    ) -> str:
        job_id = create_job(self.db, kind, project_id, params)
        self.app.send_task("labelandlearn.run_job", args=[job_id])
        return job_id

    def shutdown(self, wait: bool = True) -> None:
        return None
