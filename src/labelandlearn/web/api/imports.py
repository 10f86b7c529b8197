"""Import endpoints: upload a file (streamed to disk), describe it, start the import job."""

from __future__ import annotations

import logging
from pathlib import PurePath
from typing import Any

from flask import request
from flask_smorest import Blueprint

from labelandlearn.errors import ValidationError
from labelandlearn.ingest.importer import DUPLICATE_MODES
from labelandlearn.ingest.mapping import ColumnMapping, RowMapper
from labelandlearn.ingest.sniff import sniff_file
from labelandlearn.learning.project_embeddings import start_embedding
from labelandlearn.services import uploads
from labelandlearn.services.projects import get_project
from labelandlearn.web.api.schemas import ImportInSchema
from labelandlearn.web.state import state

logger = logging.getLogger(__name__)

blp = Blueprint("api_imports", __name__, description="Uploads and import jobs")


def _project_labels(project_id: int) -> dict[str, int]:
    with state().db.session() as session:
        project = get_project(session, project_id)
        return {label.name: label.id for label in project.labels}


def _upload_source() -> tuple[str, Any]:
    """Return the file name and a chunk iterator of a multipart or raw-body upload."""
    if request.mimetype == "multipart/form-data":
        file = request.files.get("file")
        if file is None or not file.filename:
            raise ValidationError("no file in the upload; send it as the form field 'file'")
        return file.filename, uploads.read_chunks(file.stream)
    filename = request.args.get("filename", "").strip()
    if not filename:
        raise ValidationError(
            "name the file: send ?filename=NAME with a raw body, or a multipart field 'file'"
        )
    return filename, uploads.read_chunks(request.stream)


@blp.route("/projects/<int:project_id>/uploads", methods=["POST"])
@blp.response(201)
def upload(project_id: int) -> dict[str, Any]:
    """Store an import file and return its format, encoding, columns and a preview.

    Send the file as the multipart field ``file``, or as the raw request body with
    ``?filename=NAME``. A file over the upload limit gets 413; one that cannot be imported
    (empty, binary, unsupported) gets 422 and is not kept.
    """
    _project_labels(project_id)
    app_state = state()
    filename, chunks = _upload_source()
    # Only the last path component is kept: browsers on Windows may send a full path.
    display_name = PurePath(filename.replace("\\", "/")).name or "upload"
    stored = uploads.save_upload(
        app_state.settings.data_dir,
        project_id,
        display_name,
        chunks,
        app_state.settings.max_upload_bytes,
    )
    return uploads.describe_or_delete(stored, app_state.settings.data_dir, project_id)


@blp.route("/projects/<int:project_id>/uploads/<upload_id>", methods=["DELETE"])
@blp.response(204)
def delete_upload(project_id: int, upload_id: str) -> None:
    _project_labels(project_id)
    uploads.get_upload(state().settings.data_dir, project_id, upload_id)
    uploads.delete_upload(state().settings.data_dir, project_id, upload_id)


@blp.route("/projects/<int:project_id>/imports", methods=["POST"])
@blp.arguments(ImportInSchema)
@blp.response(202)
def start_import(body: dict[str, Any], project_id: int) -> dict[str, Any]:
    """Check the column mapping against the uploaded file, then start the import job."""
    app_state = state()
    labels = _project_labels(project_id)
    stored = uploads.get_upload(app_state.settings.data_dir, project_id, body["upload_id"])
    if body["duplicates"] not in DUPLICATE_MODES:
        raise ValidationError(f"duplicates must be one of {', '.join(DUPLICATE_MODES)}")
    mapping = ColumnMapping(
        text_column=body["text_column"],
        id_column=body["id_column"] or None,
        label_column=body["label_column"] or None,
        # An empty label name means "(no label)": those rows import unlabelled.
        label_map=dict(body["label_map"] or {}) or None,
    )
    # Checking here reports a wrong column or label map at once instead of as a failed job.
    RowMapper(mapping, sniff_file(stored.path, stored.filename).columns, labels)
    job_id = app_state.runner.submit(
        "import",
        project_id,
        {
            "path": str(stored.path),
            "filename": stored.filename,
            "mapping": mapping.as_dict(),
            "duplicates": body["duplicates"],
            "delete_after": True,
        },
    )
    logger.info(
        "import job %s started for upload %s of project %s", job_id, stored.upload_id, project_id
    )
    # A model with embeddings needs a vector per item; the embed job waits for the import.
    if app_state.settings.embeddings == "background":
        start_embedding(app_state.db, app_state.runner, project_id, after_job=job_id)
    return {"job_id": job_id}
