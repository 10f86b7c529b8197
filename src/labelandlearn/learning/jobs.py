"""Job handlers of the learning engine: ``train`` (train, then score), ``score`` and
``embed`` (fill the embedding cache of a project in the background, then retrain a model that
trained without the embeddings)."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from labelandlearn.errors import NotEnoughLabelsError, ValidationError
from labelandlearn.jobs.base import JobContext, job_handler
from labelandlearn.learning.embeddings import count_missing, precompute_embeddings
from labelandlearn.learning.project_embeddings import (
    EMBED_JOB,
    project_embedding_spec,
    project_texts,
    wait_for_job,
)
from labelandlearn.learning.scoring import score_project
from labelandlearn.learning.training import train_project_model
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import ModelVersion, Project

logger = logging.getLogger(__name__)

# Times the embed job reads the project's texts again after embedding what it found.
MAX_EMBED_PASSES = 5


def _project_id(context: JobContext) -> int:
    if context.project_id is None:
        raise ValidationError("a learning job needs a project id")
    return context.project_id


@job_handler("train")
def train_job(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Train the project's model, then rescore its unlabelled items with the new model."""
    project_id = _project_id(context)
    version_id, model = train_project_model(
        context.db, project_id, progress=lambda f, message: context.progress(0.8 * f, message)
    )
    scored = score_project(
        context.db,
        project_id,
        model=model,
        progress=lambda f, message: context.progress(0.8 + 0.2 * f, message),
    )
    context.progress(1.0, f"new model ready, {scored} unlabelled items scored", force=True)
    return {"model_version_id": version_id, "items_scored": scored}


@job_handler("score")
def score_job(context: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Rescore the project's unlabelled items with its strategy and current model."""
    scored = score_project(
        context.db, _project_id(context), progress=context.progress, wait_for_vectors=True
    )
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
    embedded = 0
    # An import that lands while the job runs adds texts that no other embed job will take
    # (start_embedding starts none while this one runs), so the job reads the texts again
    # until none is missing.
    for _ in range(MAX_EMBED_PASSES):
        texts = project_texts(context.db, project_id)
        missing = count_missing(texts, spec.backend, spec.model, spec.folder)
        if missing == 0:
            break
        context.progress(0.0, f"embedding {missing} of {len(texts)} texts", force=True)
        embedded += precompute_embeddings(
            texts, spec.backend, spec.model, cache_folder=spec.folder, progress=context.progress
        )
    else:
        texts = project_texts(context.db, project_id)
        missing = count_missing(texts, spec.backend, spec.model, spec.folder)
    result = {**spec.to_dict(), "embedded": embedded, "missing": missing, "texts": len(texts)}
    if missing == 0 and _current_model_lacks_embeddings(context.db, project_id):
        # The current model was trained on TF-IDF alone while vectors were missing. Retrain
        # now, so that the model uses the embeddings before the next scheduled retrain.
        context.progress(0.9, "retraining with the embeddings", force=True)
        try:
            version_id, model = train_project_model(context.db, project_id)
            result["model_version_id"] = version_id
            result["items_scored"] = score_project(context.db, project_id, model=model)
        except NotEnoughLabelsError as error:
            logger.info("embed job %s: no retrain: %s", context.job_id, error)
    elif missing == 0 and embedded:
        # Items imported since the current model was trained waited for their vectors to be
        # scored (see score_project's wait_for_vectors); they have them now.
        context.progress(0.95, "scoring the newly embedded items", force=True)
        result["items_scored"] = score_project(context.db, project_id, wait_for_vectors=True)
    return result


def _current_model_lacks_embeddings(db: Database, project_id: int) -> bool:
    """Return whether the project's current model trained without its recipe's embeddings."""
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None or project.current_model_id is None:
            return False
        metrics = session.scalar(
            sa.select(ModelVersion.metrics).where(ModelVersion.id == project.current_model_id)
        )
    note = (metrics or {}).get("embeddings")
    return isinstance(note, dict) and note.get("status") == "pending"
