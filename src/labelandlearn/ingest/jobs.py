"""The ``import`` job: import an uploaded file in the background and store its report."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from labelandlearn.errors import ValidationError
from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.jobs.base import JobContext, job_handler

logger = logging.getLogger(__name__)


def _scaled_progress(
    context: JobContext, share: float, fraction: float, message: str = "", *, force: bool = False
) -> None:
    context.progress(share * fraction, message, force=force)


def mapping_from_params(params: dict[str, Any]) -> ColumnMapping:
    """Build the column mapping from a job's ``mapping`` dict, or from its top-level keys."""
    source = params.get("mapping") or params
    text_column = source.get("text_column")
    if not text_column:
        raise ValidationError("the import job needs text_column, the column holding the text")
    label_map = source.get("label_map") or None
    return ColumnMapping(
        text_column=str(text_column),
        id_column=source.get("id_column") or None,
        label_column=source.get("label_column") or None,
        label_map={str(key): str(value) for key, value in label_map.items()} if label_map else None,
    )


@job_handler("import")
def run_import_job(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Import ``params["path"]`` into the job's project and return the import report.

    Params: path, filename, the mapping (as ``mapping`` or as text_column, id_column,
    label_column and label_map), duplicates ("skip" or "keep") and delete_after, which removes
    the file once the import finished or failed.

    New unlabelled items are then scored with the project's strategy and current model, so
    the queue ranks them among the items already there. Unscored, they would keep the default
    score 0, which some strategies rank above every scored item and others below.
    """
    from labelandlearn.learning.scoring import score_project

    path = Path(str(params.get("path", "")))
    try:
        if context.project_id is None:
            raise ValidationError("an import job needs a project")
        report = import_file(
            context.db,
            context.project_id,
            path,
            params.get("filename") or path.name,
            mapping_from_params(params),
            duplicates=params.get("duplicates") or "skip",
            progress=partial(_scaled_progress, context, 0.95),
        )
    finally:
        if params.get("delete_after"):
            path.unlink(missing_ok=True)
            logger.debug("deleted imported file %s", path)
    result = {**report.as_dict(), "items_scored": 0}
    message = f"imported {report.rows_imported} rows"
    if report.rows_imported > report.rows_labelled:
        result["items_scored"] = score_project(
            context.db,
            context.project_id,
            progress=lambda fraction, text: context.progress(0.95 + 0.05 * fraction, text),
            wait_for_vectors=True,
        )
        if result["items_scored"]:
            message += f", scored {result['items_scored']} unlabelled items"
    context.progress(1.0, message, force=True)
    return result
