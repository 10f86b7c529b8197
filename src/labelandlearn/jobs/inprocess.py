"""The default runner: jobs run in a small pool of worker threads of the current process."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from labelandlearn.jobs.base import create_job, run_job
from labelandlearn.storage.db import Database


class InProcessRunner:
    def __init__(self, db: Database, threads: int = 2) -> None:
        self.db = db
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lnl-job")
        self.futures: dict[str, Future[None]] = {}

    def submit(
        self, kind: str, project_id: int | None, params: dict[str, Any] | None = None
    ) -> str:
        job_id = create_job(self.db, kind, project_id, params)
        self.futures[job_id] = self._executor.submit(run_job, self.db, job_id)
        return job_id

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Block until the job finishes; for the CLI and tests."""
        future = self.futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)


class SynchronousRunner:
    """Runs each job in the caller's thread before ``submit`` returns (CLI, tests)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(
        self, kind: str, project_id: int | None, params: dict[str, Any] | None = None
    ) -> str:
        job_id = create_job(self.db, kind, project_id, params)
        run_job(self.db, job_id)
        return job_id

    def shutdown(self, wait: bool = True) -> None:
        return None
