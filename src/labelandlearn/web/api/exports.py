"""Export endpoints: start an export job, then download the file it wrote."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Response, send_file
from flask_smorest import Blueprint

from labelandlearn.errors import ConflictError, NotFoundError
from labelandlearn.services.projects import get_project
from labelandlearn.storage.models import Job
from labelandlearn.web.access import requires
from labelandlearn.web.api.schemas import ExportInSchema
from labelandlearn.web.state import state

logger = logging.getLogger(__name__)

blp = Blueprint("api_exports", __name__, description="Exports of labelled data")

MIMETYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


@blp.route("/projects/<int:project_id>/exports", methods=["POST"])
@blp.arguments(ExportInSchema)
@blp.response(202)
def start_export(body: dict[str, Any], project_id: int) -> dict[str, Any]:
    """Start an export job; poll /jobs/<job_id>, then GET /exports/<job_id>/download."""
    with state().db.session() as session:
        get_project(session, project_id)
    folder = str(state().settings.data_dir / "exports")
    job_id = state().runner.submit(
        "export", project_id, {"format": body["format"], "folder": folder}
    )
    return {"job_id": job_id}


def _export_file(job_id: str) -> tuple[Path, str, str]:
    """Return the path, download name and format of a finished export job's file."""
    with state().db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.kind != "export":
            raise NotFoundError(f"export {job_id} not found")
        if job.status != "done":
            detail = f": {job.error}" if job.error else ""
            raise ConflictError(f"export {job_id} is {job.status}{detail}; wait until it is done")
        result = dict(job.result or {})
    path = Path(str(result.get("path", "")))
    # The job result is trusted only for files inside the data folder.
    exports_root = Path(state().settings.data_dir).resolve()
    if not path.is_file() or not path.resolve().is_relative_to(exports_root):
        raise NotFoundError(f"the file of export {job_id} no longer exists; export again")
    file_format = str(result.get("format") or path.suffix.lstrip("."))
    return path, str(result.get("filename") or path.name), file_format


@blp.route("/exports/<job_id>/download")
@requires("manage")
def download_export(job_id: str) -> Response:
    path, filename, file_format = _export_file(job_id)
    return send_file(
        path,
        mimetype=MIMETYPES.get(file_format, "application/octet-stream"),
        as_attachment=True,
        download_name=filename,
        max_age=0,
    )
