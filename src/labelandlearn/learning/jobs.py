"""Job handlers of the learning engine: ``train`` (train, then score), ``score`` and
``embed`` (fill the embedding cache of a project in the background)."""

from __future__ import annotations

import logging
from typing import Any

from labelandlearn.errors import ValidationError
from labelandlearn.jobs.base import JobContext, job_handler
from labelandlearn.learning.embeddings import count_missing, precompute_embeddings
from labelandlearn.learning.project_embeddings import (
    EMBED_JOB,
    project_embedding_spec,
    project_texts,
    wait_for_job,
)
from labelandlearn.learning.scoring import score_project
from labelandlearn.learning.training import train_project

logger = logging.getLogger(__name__)


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


@job_handler(EMBED_JOB)
def embed_job(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Embed every item of the project into the on-disk cache, in small batches.

    Params: ``after_job``, a job (an import) to wait for first; the embed job stops without
    embedding when that job failed.
    """
    project_id = _project_id(context)
    after_job = params.get("after_job")
    if after_job:
        context.progress(0.0, "waiting for the import to finish", force=True)
        status = wait_for_job(context.db, str(after_job))
        if status != "done":
            logger.info(
                "embed job %s: job %s ended %s, nothing embedded", context.job_id, after_job, status
            )
            return {"embedded": 0, "missing": None, "skipped": f"job {after_job} {status}"}
    spec = project_embedding_spec(context.db, project_id)
    if spec is None:
        return {"embedded": 0, "missing": 0, "skipped": "the project's model uses no embeddings"}
    texts = project_texts(context.db, project_id)
    context.progress(0.0, f"embedding {len(texts)} texts with {spec.model}", force=True)
    embedded = precompute_embeddings(
        texts, spec.backend, spec.model, cache_folder=spec.folder, progress=context.progress
    )
    missing = count_missing(texts, spec.backend, spec.model, spec.folder)
    return {**spec.to_dict(), "embedded": embedded, "missing": missing, "texts": len(texts)}
