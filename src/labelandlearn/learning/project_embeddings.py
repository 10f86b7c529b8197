"""Which embeddings a project's model needs, how many of its items still lack one, and the
``embed`` job that fills the on-disk cache in the background.

Training uses a recipe's embeddings only once every item of the project has a cached vector.
Until then it trains the same classifier on TF-IDF alone, so a large project never waits for
embeddings inside a training job.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from labelandlearn.errors import LabelAndLearnError, NotFoundError, ValidationError
from labelandlearn.jobs.base import JobRunner
from labelandlearn.learning.base import ModelRecipe, TextModel, get_recipe
from labelandlearn.learning.embeddings import (
    DEFAULT_BACKEND,
    DEFAULT_MODELS,
    backend_available,
    count_missing,
    count_missing_hashes,
    default_cache_folder,
    install_command,
)
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Dataset, Item, Job, Project

logger = logging.getLogger(__name__)

EMBED_JOB = "embed"
ACTIVE_JOB_STATES = ("queued", "running")
# How often an embed job that waits for an import checks whether the import finished.
WAIT_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class EmbeddingSpec:
    """The embedding backend, model and cache folder that a recipe reads vectors from."""

    backend: str
    model: str
    folder: Path

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model}


def recipe_embedding_spec(recipe: ModelRecipe) -> EmbeddingSpec | None:
    """Return the embeddings ``recipe`` uses, or None for a recipe without embeddings.

    The automatic choice ("auto") counts as using the embeddings of its first embedding
    candidate unless its embedding policy is "off".
    """
    params = _embedding_featurizer_params(recipe)
    if params is None:
        return None
    backend = str(params.get("backend") or DEFAULT_BACKEND)
    model = str(params.get("model") or DEFAULT_MODELS.get(backend, ""))
    cache_dir = params.get("cache_dir")
    folder = Path(cache_dir) if cache_dir else default_cache_folder()
    return EmbeddingSpec(backend=backend, model=model, folder=folder)


def model_embedding_spec(model: TextModel) -> EmbeddingSpec | None:
    """Return the embeddings a trained model reads for each text, or None when it reads none
    (a model without embeddings, or one trained on TF-IDF alone while vectors were missing)."""
    if not getattr(model.featurizer, "use_embeddings_", True):
        return None
    params = model.params
    featurizer = str(params.get("featurizer", ""))
    if "embedding" not in featurizer:
        return None
    spec = recipe_embedding_spec(
        ModelRecipe(
            name=str(params.get("recipe", "")),
            featurizer=featurizer,
            classifier=str(params.get("classifier", "")),
            featurizer_params=dict(params.get("featurizer_params") or {}),
        )
    )
    if spec is None or not backend_available(spec.backend):
        return None
    return spec


def texts_without_vectors(model: TextModel, texts: Sequence[str]) -> int:
    """Return how many distinct texts the model would have to embed before predicting."""
    spec = model_embedding_spec(model)
    if spec is None:
        return 0
    return count_missing(texts, spec.backend, spec.model, spec.folder)


def _embedding_featurizer_params(recipe: ModelRecipe) -> dict[str, Any] | None:
    if "embedding" in recipe.featurizer:
        return dict(recipe.featurizer_params)
    policy = getattr(recipe, "embeddings", None)
    if policy is None or policy in ("off", "pending"):
        return None
    from labelandlearn.learning.auto import AUTO_CANDIDATES

    for candidate in AUTO_CANDIDATES:
        if "embedding" in candidate.featurizer:
            return dict(candidate.featurizer_params)
    return None


def tfidf_only_recipe(recipe: ModelRecipe) -> ModelRecipe:
    """Return ``recipe`` without its embedding block: same name and classifier, TF-IDF input."""
    if hasattr(recipe, "embeddings"):
        return dataclasses.replace(recipe, embeddings="pending")  # type: ignore[call-arg]
    from labelandlearn.learning.recipes import TFIDF_PARAMS

    params = dict(recipe.featurizer_params)
    tfidf_params = params.get("tfidf_params") or params.get("fallback_params") or TFIDF_PARAMS
    return ModelRecipe(
        name=recipe.name,
        featurizer="tfidf",
        classifier=recipe.classifier,
        featurizer_params=dict(tfidf_params),
        classifier_params=dict(recipe.classifier_params),
        description=recipe.description,
    )


def project_texts(db: Database, project_id: int) -> list[str]:
    """Return the distinct texts of every item of the project, labelled or not."""
    with db.session() as session:
        if session.get(Project, project_id) is None:
            raise NotFoundError(f"project {project_id} not found")
        texts = session.scalars(sa.select(Item.text).where(Item.project_id == project_id))
        return list(dict.fromkeys(texts))


def project_embedding_spec(db: Database, project_id: int) -> EmbeddingSpec | None:
    """Return the embeddings the project's model uses, or None when it uses none."""
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        model_name = project.model_name
    return recipe_embedding_spec(get_recipe(model_name))


def project_text_hashes(db: Database, project_id: int) -> list[str]:
    """Return the distinct text hashes of the project's items, as ``text_sha1`` computes them.

    Reads the ``(project_id, text_hash)`` index alone, without the texts.
    """
    with db.session() as session:
        if session.get(Project, project_id) is None:
            raise NotFoundError(f"project {project_id} not found")
        return list(
            session.scalars(
                sa.select(Item.text_hash).where(Item.project_id == project_id).distinct()
            )
        )


def embedding_status(db: Database, project_id: int) -> dict[str, Any] | None:
    """Return the project's embedding progress for the dashboard, or None without embeddings.

    Keys: backend, model, installed, install (the pip command), total (distinct texts),
    missing (texts without a cached vector, None without the backend), ready, job (the
    latest embed job's id, status, progress and message, or None), and error (why the vector
    cache cannot be read, or None).
    """
    spec = project_embedding_spec(db, project_id)
    if spec is None:
        return None
    installed = backend_available(spec.backend)
    job = _latest_embed_job(db, project_id)
    error = None
    try:
        total, missing = _text_counts(db, project_id, spec, job, installed)
    except ValidationError as exc:
        # A damaged cache must not take the rest of the dashboard down with it.
        logger.warning("project %s: embedding cache unreadable: %s", project_id, exc)
        total, missing, error = 0, None, str(exc)
    return {
        **spec.to_dict(),
        "installed": installed,
        "install": install_command(spec.backend),
        "total": total,
        "missing": missing,
        "ready": installed and missing == 0,
        "job": job,
        "error": error,
    }


# Counting a project's texts without a vector reads every distinct text hash of the project
# and looks each up in the vector cache: 1.5 s for 500,000 items. So the dashboard reuses the
# count while the project's items and its latest embed job stay the same. Another project's
# embed job may cache vectors of the same texts, so a count expires after COUNT_SECONDS, or
# ACTIVE_COUNT_SECONDS while the project's embed job runs.
COUNT_SECONDS = 300.0
ACTIVE_COUNT_SECONDS = 5.0
_counts: dict[tuple[Any, ...], tuple[tuple[Any, ...], float, int, int | None]] = {}
_counts_lock = threading.Lock()


def _text_counts(
    db: Database,
    project_id: int,
    spec: EmbeddingSpec,
    job: dict[str, Any] | None,
    installed: bool,
) -> tuple[int, int | None]:
    """Return (distinct texts, texts without a vector or None when not installed)."""
    with db.session() as session:
        n_items, last_id = session.execute(
            sa.select(sa.func.count(), sa.func.max(Item.id)).where(Item.project_id == project_id)
        ).one()
    active = job is not None and job["status"] in ACTIVE_JOB_STATES
    state = (n_items, last_id, job["id"] if job else None, job["status"] if job else None)
    key = (db.url, project_id, spec, installed)
    now = time.monotonic()
    with _counts_lock:
        stored = _counts.get(key)
    limit = ACTIVE_COUNT_SECONDS if active else COUNT_SECONDS
    if stored is not None and stored[0] == state and now - stored[1] < limit:
        return stored[2], stored[3]
    hashes = project_text_hashes(db, project_id)
    missing = (
        count_missing_hashes(hashes, spec.backend, spec.model, spec.folder) if installed else None
    )
    with _counts_lock:
        _counts[key] = (state, now, len(hashes), missing)
    return len(hashes), missing


def _latest_embed_job(db: Database, project_id: int) -> dict[str, Any] | None:
    with db.session() as session:
        job = session.scalar(
            sa.select(Job)
            .where(Job.project_id == project_id, Job.kind == EMBED_JOB)
            .order_by(Job.created_at.desc())
            .limit(1)
        )
        if job is None:
            return None
        return {
            "id": job.id,
            "status": job.status,
            "progress": job.progress,
            "message": job.message,
            "error": job.error,
        }


def start_embedding(
    db: Database, runner: JobRunner, project_id: int, *, after_job: str | None = None
) -> str | None:
    """Start the ``embed`` job when the project's model needs embeddings; return its id.

    Returns None, starting nothing, when the model uses no embeddings, the backend is not
    installed, or an embed job of the project is already queued or running. ``after_job``
    makes the job wait for that job (an import) to finish first.
    """
    spec = project_embedding_spec(db, project_id)
    if spec is None:
        return None
    if not backend_available(spec.backend):
        logger.info(
            "project %s: embedding backend %s is not installed; no embed job started",
            project_id,
            spec.backend,
        )
        return None
    with db.session() as session:
        busy = session.scalar(
            sa.select(Job.id).where(
                Job.project_id == project_id,
                Job.kind == EMBED_JOB,
                Job.status.in_(ACTIVE_JOB_STATES),
            )
        )
    if busy is not None:
        return None
    params = {"after_job": after_job} if after_job else {}
    job_id = runner.submit(EMBED_JOB, project_id, params)
    logger.info("project %s: embed job %s queued (%s)", project_id, job_id, spec.model)
    return job_id


def wait_for_job(db: Database, job_id: str, poll_seconds: float = WAIT_POLL_SECONDS) -> str:
    """Block until job ``job_id`` is neither queued nor running; return its final status.

    A job that no longer exists counts as "missing".
    """
    while True:
        with db.session() as session:
            job = session.get(Job, job_id)
            status = "missing" if job is None else job.status
        if status not in ACTIVE_JOB_STATES:
            return status
        time.sleep(poll_seconds)


def resume_embeddings(db: Database, runner: JobRunner) -> list[str]:
    """Start the ``embed`` job of every project whose items may lack vectors.

    Called when the server starts: it covers projects loaded or imported without the web
    import (the demo, the command line) and an embed job that a stopped server left failed.
    Returns the ids of the jobs started.
    """
    with db.session() as session:
        projects = session.execute(sa.select(Project.id, Project.model_name)).all()
    started = []
    for project_id, model_name in projects:
        try:
            spec = recipe_embedding_spec(get_recipe(model_name))
        except LabelAndLearnError:
            continue
        if spec is None or not backend_available(spec.backend):
            continue
        if not _needs_embed_job(db, project_id):
            continue
        job_id = start_embedding(db, runner, project_id)
        if job_id is not None:
            started.append(job_id)
    return started


def _needs_embed_job(db: Database, project_id: int) -> bool:
    """Return whether the project has no finished embed job, or an import after its last one.

    A project whose latest embed job failed needs one again; queued and running jobs count as
    finished here, since ``start_embedding`` starts no second one.
    """
    with db.session() as session:
        latest = session.execute(
            sa.select(Job.status, Job.created_at)
            .where(Job.project_id == project_id, Job.kind == EMBED_JOB)
            .order_by(Job.created_at.desc())
            .limit(1)
        ).first()
        if latest is None or latest.status == "failed":
            return True
        newer_import = session.scalar(
            sa.select(Dataset.id)
            .where(Dataset.project_id == project_id, Dataset.created_at > latest.created_at)
            .limit(1)
        )
    return newer_import is not None


def start_embedding_if_missing(db: Database, runner: JobRunner, project_id: int) -> str | None:
    """Start the ``embed`` job when some items lack the embeddings the project's model needs.

    That happens after a project switched to such a model. Returns the job id, or None.
    """
    spec = project_embedding_spec(db, project_id)
    if spec is None or not backend_available(spec.backend):
        return None
    hashes = project_text_hashes(db, project_id)
    if count_missing_hashes(hashes, spec.backend, spec.model, spec.folder) == 0:
        return None
    return start_embedding(db, runner, project_id)
