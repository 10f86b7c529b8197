"""Job handlers of the learning engine: ``train`` (train, then score) and ``score``."""

from __future__ import annotations

from typing import Any

from labelandlearn.errors import ValidationError
from labelandlearn.jobs.base import JobContext, job_handler
from labelandlearn.learning.scoring import score_project
from labelandlearn.learning.training import train_project


def _project_id(context: JobContext) -> int:
    if context.project_id is None:
        raise ValidationError("a learning job needs a project id")
    return context.project_id


@job_handler("train")
def train_job(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Train the project's model, then rescore its unlabelled items with the new model."""
    project_id = _project_id(context)
    version_id = train_project(
        context.db, project_id, progress=lambda f, message: context.progress(0.8 * f, message)
    )
    scored = score_project(
        context.db,
        project_id,
        progress=lambda f, message: context.progress(0.8 + 0.2 * f, message),
    )
    return {"model_version_id": version_id, "items_scored": scored}


@job_handler("score")
def score_job(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Rescore the project's unlabelled items with its strategy and current model."""
    scored = score_project(context.db, _project_id(context), progress=context.progress)
    return {"items_scored": scored}
