"""Background jobs: one interface, run in worker threads by default or on Celery workers."""

from labelandlearn.jobs.base import JobContext, JobRunner, job_handler, run_job

__all__ = ["JobContext", "JobRunner", "job_handler", "run_job"]
