"""The ``export`` job: write a project's labelled items into the data folder's exports."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.export.labelled import EXPORT_FORMATS, export_labelled
from labelandlearn.jobs.base import JobContext, job_handler
from labelandlearn.settings import get_settings
from labelandlearn.storage.models import Project

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def export_filename(project_name: str, fmt: str, moment: datetime) -> str:
    """Return a file name such as ``ethereum-tweets-demo-labelled-20240101-120000.csv``."""
    slug = _UNSAFE_FILENAME_CHARS.sub("-", project_name).strip("-.").lower()[:80] or "project"
    return f"{slug}-labelled-{moment:%Y%m%d-%H%M%S}.{fmt}"


@job_handler("export")
def run_export_job(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Export the job's project in ``params["format"]`` (csv or jsonl, default csv).

    The file goes to ``<data_dir>/exports``; it is written under a temporary name and renamed
    when complete, so a download never sees half a file. Returns path, filename, format, rows.
    """
    fmt = str(params.get("format") or "csv")
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(f"export format {fmt!r} is not supported; use csv or jsonl")
    if context.project_id is None:
        raise ValidationError("an export job needs a project")
    with context.db.session() as session:
        project = session.get(Project, context.project_id)
        if project is None:
            raise NotFoundError(f"project {context.project_id} not found")
        filename = export_filename(project.name, fmt, datetime.now(UTC))

    # The web app passes its own data folder; the CLI and workers use the settings.
    folder = Path(params["folder"]) if params.get("folder") else get_settings().data_dir / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    partial = folder / f".{filename}.{context.job_id}.part"
    try:
        rows = export_labelled(
            context.db, context.project_id, partial, fmt, progress=context.progress
        )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return {"path": str(target), "filename": filename, "format": fmt, "rows": rows}
