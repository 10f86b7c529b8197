"""The job interface: handlers registered by kind, a progress context, and runners.

A job row is created in the database first, then a runner executes ``run_job`` with its id,
in a worker thread (``InProcessRunner``) or on a Celery worker (``CeleryRunner``). Handlers
report progress through ``JobContext.progress``; clients poll the job row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select

from labelandlearn.errors import LabelAndLearnError, NotFoundError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Job

logger = logging.getLogger(__name__)

JobHandler = Callable[["JobContext", dict[str, Any]], dict[str, Any] | None]

_HANDLERS: dict[str, JobHandler] = {}


def job_handler(kind: str) -> Callable[[JobHandler], JobHandler]:
    """Register ``function`` as the handler of jobs of ``kind``."""

    def register(function: JobHandler) -> JobHandler:
        _HANDLERS[kind] = function
        return function

    return register


def get_handler(kind: str) -> JobHandler:
    _load_builtin_handlers()
    try:
        return _HANDLERS[kind]
    except KeyError:
        known = ", ".join(sorted(_HANDLERS)) or "none"
        raise LabelAndLearnError(f"unknown job kind {kind!r}; known kinds: {known}") from None


def _load_builtin_handlers() -> None:
    # Importing these modules registers their handlers; done lazily so that importing the
    # jobs package does not pull in scikit-learn.
    import labelandlearn.jobs.handlers  # noqa: F401


class JobContext:
    """What a handler gets: the database, the job id, and a rate-limited progress report."""

    def __init__(self, db: Database, job_id: str, project_id: int | None) -> None:
        self.db = db
        self.job_id = job_id
        self.project_id = project_id
        self._last_report = 0.0

    def progress(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        """Store progress (0 to 1) and a short message; writes at most 4 times a second."""
        now = time.monotonic()
        if not force and now - self._last_report < 0.25:
            return
        self._last_report = now
        with self.db.session() as session:
            job = session.get(Job, self.job_id)
            if job is not None:
                job.progress = max(0.0, min(1.0, fraction))
                job.message = message


def create_job(
    db: Database, kind: str, project_id: int | None, params: dict[str, Any] | None = None
) -> str:
    get_handler(kind)
    with db.session() as session:
        job = Job(kind=kind, project_id=project_id, params=params or {}, status="queued")
        session.add(job)
        session.flush()
        return job.id


def run_job(db: Database, job_id: str) -> None:
    """Execute a queued job and store its outcome; never raises for a handler's failure."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} not found")
        if job.status != "queued":
            logger.warning("job %s is %s, not queued; not run again", job_id, job.status)
            return
        job.status = "running"
        job.started_at = datetime.now(UTC)
        kind, project_id, params = job.kind, job.project_id, dict(job.params or {})

    started = time.monotonic()
    context = JobContext(db, job_id, project_id)
    status, result, error = "done", None, None
    try:
        result = get_handler(kind)(context, params)
    except LabelAndLearnError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:
        logger.exception("job %s (%s) failed", job_id, kind)
        status, error = "failed", f"internal error: {type(exc).__name__}"

    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        job.status = status
        job.result = result
        job.error = error
        job.finished_at = datetime.now(UTC)
        if status == "done":
            job.progress = 1.0
    logger.info(
        "job %s kind=%s project=%s status=%s seconds=%.2f%s",
        job_id,
        kind,
        project_id,
        status,
        time.monotonic() - started,
        f" error={error}" if error else "",
    )


def fail_job(db: Database, job_id: str, error: str) -> None:
    """Mark a job that cannot finish as failed, unless it already finished."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is not None and job.status in ("queued", "running"):
            job.status = "failed"
            job.error = error
            job.finished_at = datetime.now(UTC)
    logger.info("job %s failed: %s", job_id, error)


def fail_stale_jobs(db: Database) -> int:
    """Mark jobs left queued or running by a server that stopped as failed; return how many.

    Only for the in-process runner: its jobs cannot outlive the server process.
    """
    with db.session() as session:
        stale = list(session.scalars(select(Job).where(Job.status.in_(("queued", "running")))))
        for job in stale:
            job.status = "failed"
            job.error = "the server stopped before the job finished; start it again"
            job.finished_at = datetime.now(UTC)
    if stale:
        logger.warning("marked %d jobs left by a stopped server as failed", len(stale))
    return len(stale)


class JobRunner(Protocol):
    """Something that runs queued jobs without blocking the caller."""

    def submit(
        self, kind: str, project_id: int | None, params: dict[str, Any] | None = None
    ) -> str:
        """Create a job row, start the job, and return its id at once."""
        ...

    def shutdown(self, wait: bool = True) -> None: ...
