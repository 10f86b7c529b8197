"""The queue follows the strategy: imports and strategy changes rescore the unlabelled items."""

from __future__ import annotations

import sqlalchemy as sa
from flask.testing import FlaskClient
from web_fixtures import app, client, database, settings  # noqa: F401
from web_helpers import api_headers, import_rows, make_project, tweet_rows

from labelandlearn.jobs.base import create_job
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Job


def unlabelled_scores(db: Database, project_id: int) -> dict[str, float]:
    with db.session() as session:
        rows = session.execute(
            sa.select(Item.text, Item.score).where(
                Item.project_id == project_id, Item.label_id.is_(None)
            )
        ).all()
    return {row.text: row.score for row in rows}


def trained_project(client: FlaskClient, database: Database) -> int:
    project_id = make_project(database, model_name="tfidf-linear")
    job = import_rows(client, project_id, tweet_rows(60, labelled=45))
    assert job["status"] == "done", job
    trained = client.post(f"/api/v1/projects/{project_id}/train", headers=api_headers(client))
    assert trained.status_code == 202, trained.get_json()
    return project_id


def test_import_scores_new_items_of_a_trained_project(
    client: FlaskClient, database: Database
) -> None:
    project_id = trained_project(client, database)
    new_rows = [{**row, "text": f"new {row['text']}", "rating": ""} for row in tweet_rows(9, 0)]

    job = import_rows(client, project_id, new_rows)

    assert job["status"] == "done", job
    assert job["result"]["items_scored"] == 15 + 9
    scores = unlabelled_scores(database, project_id)
    # Unscored items keep 0, above every margin score (minus the margin), and would all be
    # asked before any item the model is unsure about.
    assert all(scores[row["text"]] != 0.0 for row in new_rows)


def test_import_without_a_model_scores_nothing(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    job = import_rows(client, project_id, tweet_rows(12, labelled=0))
    assert job["status"] == "done", job
    assert job["result"]["items_scored"] == 0
    assert set(unlabelled_scores(database, project_id).values()) == {0.0}


def test_strategy_change_rescores_the_queue(client: FlaskClient, database: Database) -> None:
    project_id = trained_project(client, database)
    project = client.get(f"/api/v1/projects/{project_id}").get_json()
    body = {
        key: project[key]
        for key in ("name", "text_column", "model_name", "retrain_every", "overlap")
    }
    body["labels"] = [{"id": label["id"], "name": label["name"]} for label in project["labels"]]

    changed = client.put(
        f"/api/v1/projects/{project_id}",
        json={**body, "strategy_name": "file-order"},
        headers=api_headers(client),
    )

    assert changed.status_code == 200, changed.get_json()
    with database.session() as session:
        ranked = session.scalars(
            sa.select(Item.position)
            .where(Item.project_id == project_id, Item.label_id.is_(None))
            .order_by(Item.score.desc())
        ).all()
    assert ranked == sorted(ranked)


def test_train_request_joins_queued_training(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, model_name="tfidf-linear")
    queued = create_job(database, "train", project_id, {"reason": "auto"})

    response = client.post(f"/api/v1/projects/{project_id}/train", headers=api_headers(client))

    assert response.status_code == 202
    assert response.get_json() == {"job_id": queued}
    with database.session() as session:
        kinds = list(session.scalars(sa.select(Job.kind).where(Job.project_id == project_id)))
    assert kinds == ["train"]
