"""The default runner: jobs start from worker threads of the server process.

With ``isolation="process"`` (the server's default) each job's work runs in a child process
that the thread waits for. Training, scoring and imports are CPU-bound Python, and in the
server process they would hold the interpreter lock that the request threads need: a 12 s
retrain of a 100,000-item project raised the label-submit p95 from 15 ms to about 390 ms
when it ran in a thread (benchmarks/http_latency.py on 2 cores). ``isolation="thread"``
runs the work in the thread itself, for in-memory databases and small setups.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Literal

from sqlalchemy.engine import make_url

from labelandlearn.jobs.base import create_job, run_job
from labelandlearn.storage.db import Database

logger = logging.getLogger(__name__)

Isolation = Literal["process", "thread"]
# Job kinds that run for minutes to hours (embedding a large project). They take turns on a
# thread of their own, so they never hold every thread while training, scoring and imports
# wait: two embed jobs on the 2 shared threads kept a requested retrain queued for over 10
# minutes in a helper's test.
BACKGROUND_KINDS = frozenset({"embed"})


def _run_in_child(database_url: str, job_id: str) -> None:
    """Run one job in a child process with its own database engine."""
    database = Database(database_url)
    try:
        run_job(database, job_id)
    finally:
        database.dispose()


def _child_setup(environment: dict[str, str], log_level: int) -> None:
    # The child reads settings (data folder, embedding cache) from the environment, so it
    # gets the values of the parent's Settings object, which may not come from the env.
    os.environ.update(environment)
    from labelandlearn.settings import get_settings

    get_settings.cache_clear()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class InProcessRunner:
    def __init__(
        self,
        db: Database,
        threads: int = 2,
        *,
        isolation: Isolation = "thread",
        environment: dict[str, str] | None = None,
    ) -> None:
        self.db = db
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lnl-job")
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lnl-background")
        self._processes: ProcessPoolExecutor | None = None
        in_memory = make_url(db.url).database in (None, "", ":memory:")
        if isolation == "process" and not in_memory:
            self._processes = ProcessPoolExecutor(
                # One child for each thread, and one for the background thread's job.
                max_workers=threads + 1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_setup,
                initargs=(environment or {}, logging.getLogger().getEffectiveLevel()),
            )
        self.futures: dict[str, Future[None]] = {}
        self._stopping = False

    def submit(
        self, kind: str, project_id: int | None, params: dict[str, Any] | None = None
    ) -> str:
        job_id = create_job(self.db, kind, project_id, params)
        executor = self._background if kind in BACKGROUND_KINDS else self._executor
        self.futures[job_id] = executor.submit(self._run, job_id)
        return job_id

    def _run(self, job_id: str) -> None:
        if self._processes is None:
            run_job(self.db, job_id)
            return
        try:
            self._processes.submit(_run_in_child, self.db.url, job_id).result()
        except Exception:
            from labelandlearn.jobs.base import fail_job

            if self._stopping:
                logger.info("job %s: cut off because the server is stopping", job_id)
                fail_job(self.db, job_id, "the server stopped during the job; start it again")
                return
            # A child that died (killed, out of memory) leaves the job running; mark it.
            logger.exception("job %s: its child process failed", job_id)
            fail_job(self.db, job_id, "the job's process stopped unexpectedly; start it again")

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Block until the job finishes; for the CLI and tests."""
        future = self.futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait=False`` also end the child processes of running jobs.

        A child process is not ended by its parent's exit, so without this a job (an embed job
        runs for minutes) would go on after the server stopped. The job's row is marked failed
        by the thread that waited for the child, or else at the next start.
        """
        self._stopping = True
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
        self._background.shutdown(wait=wait, cancel_futures=not wait)
        if self._processes is None:
            return
        if not wait:
            # ProcessPoolExecutor has no public way to stop busy workers before Python 3.14.
            workers = getattr(self._processes, "_processes", None) or {}
            for process in list(workers.values()):
                if process.is_alive():
                    process.terminate()
        self._processes.shutdown(wait=wait, cancel_futures=not wait)


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
