"""The item predictions endpoint, which the labelling screen calls after a new model."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from web_fixtures import app, client, database, settings  # noqa: F401
from web_helpers import api_headers, import_rows, make_project, tweet_rows

from labelandlearn.storage.db import Database


def _train(client: FlaskClient, project_id: int) -> int:
    """Train a model version synchronously; return its id."""
    started = client.post(f"/api/v1/projects/{project_id}/train", headers=api_headers(client))
    assert started.status_code == 202, started.get_json()
    job = client.get(f"/api/v1/jobs/{started.get_json()['job_id']}").get_json()
    assert job["status"] == "done", job
    model_id: int = job["result"]["model_version_id"]
    return model_id


def _predictions(client: FlaskClient, project_id: int, ids: list[int]) -> dict[int, Any]:
    query = ",".join(str(item_id) for item_id in ids)
    response = client.get(f"/api/v1/projects/{project_id}/items/predictions?ids={query}")
    assert response.status_code == 200, response.get_json()
    return {entry["id"]: entry["prediction"] for entry in response.get_json()["items"]}


def _leased_ids(client: FlaskClient, project_id: int) -> list[int]:
    items = client.get(f"/api/v1/projects/{project_id}/items/next?limit=3").get_json()["items"]
    assert len(items) == 3
    return [item["id"] for item in items]


def test_item_predictions_follow_new_model(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, model_name="tfidf-linear")
    import_rows(client, project_id, tweet_rows(40, 30))
    ids = _leased_ids(client, project_id)

    assert _predictions(client, project_id, ids) == {item_id: None for item_id in ids}

    first = _train(client, project_id)
    predictions = _predictions(client, project_id, ids)
    assert sorted(predictions) == sorted(ids)
    for prediction in predictions.values():
        assert prediction["model_version_id"] == first
        assert prediction["label"] in ("negative", "useless", "positive")
        assert 0 <= prediction["confidence"] <= 1

    # The model cache now contains the first version, but the predictions must come from the second.
    second = _train(client, project_id)
    assert second != first
    for prediction in _predictions(client, project_id, ids).values():
        assert prediction["model_version_id"] == second


def test_item_predictions_skip_other_projects(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, model_name="tfidf-linear")
    other_id = make_project(database, name="other", model_name="tfidf-linear")
    import_rows(client, project_id, tweet_rows(12, 0))
    import_rows(client, other_id, tweet_rows(12, 0))
    own_ids = _leased_ids(client, project_id)
    other_ids = _leased_ids(client, other_id)

    predictions = _predictions(client, project_id, own_ids + other_ids)

    assert sorted(predictions) == sorted(own_ids)


def test_item_predictions_reject_bad_ids(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    url = f"/api/v1/projects/{project_id}/items/predictions"

    missing = client.get(url)
    assert missing.status_code == 422
    malformed = client.get(f"{url}?ids=1,x")
    assert malformed.status_code == 422
    assert "ids must list item ids" in malformed.get_json()["error"]["message"]
    too_many = client.get(f"{url}?ids={','.join(str(n) for n in range(1, 52))}")
    assert too_many.status_code == 422
    assert "send at most 50" in too_many.get_json()["error"]["message"]
