"""Job endpoints: poll a job's status and progress."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from labelandlearn.errors import NotFoundError
from labelandlearn.storage.models import Job, iso_utc
from labelandlearn.web.state import state

blp = Blueprint("api_jobs", __name__, description="Background jobs")


def job_payload(job: Job) -> dict[str, Any]:
    result = job.result
    if isinstance(result, dict) and "path" in result:
        # The file's place on the server is no business of the client, which downloads the
        # export by job id.
        result = {key: value for key, value in result.items() if key != "path"}
    return {
        "id": job.id,
        "project_id": job.project_id,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "result": result,
        "error": job.error,
        "created_at": iso_utc(job.created_at) if job.created_at else None,
        "finished_at": iso_utc(job.finished_at) if job.finished_at else None,
    }


@blp.route("/jobs/<job_id>")
@blp.response(200)
def get_job(job_id: str) -> dict[str, Any]:
    with state().db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} not found")
        return job_payload(job)
