"""Dashboard, stopping panel, model page, plots, model downloads, exports and JSON 404s."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from web_fixtures import app, client, database, settings  # noqa: F401
from web_helpers import XSS, api_headers, import_rows, make_project, tweet_rows

from labelandlearn.services import dashboard as models_service
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import ModelVersion, Project
from labelandlearn.web import plots

PLOTS = ("learning-curve", "live-accuracy", "class-balance", "confusion-matrix")
METRICS = {
    "accuracy": 0.75,
    "accuracy_std": 0.02,
    "macro_f1": 0.66,
    "macro_f1_std": 0.03,
    "labels": ["negative", "useless", "positive"],
    "per_class": {
        "negative": {"precision": 0.5, "recall": 0.4, "f1": 0.444, "support": 10},
        "useless": {"precision": 0.8, "recall": 0.9, "f1": 0.847, "support": 30},
        "positive": {"precision": 0.7, "recall": 0.6, "f1": 0.646, "support": 12},
    },
    "confusion_matrix": [[4, 5, 1], [1, 27, 2], [0, 5, 7]],
}


def add_model_version(database: Database, project_id: int, version: int = 1) -> bytes:
    """Store a model version row directly and make it current; return its weights."""
    weights = f"model file {version}".encode()
    with database.session() as session:
        row = ModelVersion(
            project_id=project_id,
            version=version,
            model_name="tfidf-linear",
            n_labels=50 * version,
            metrics=METRICS,
            weights=weights,
            training_seconds=1.5,
        )
        session.add(row)
        session.flush()
        project = session.get(Project, project_id)
        assert project is not None
        project.current_model_id = row.id
    return weights


def test_dashboard_without_model(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    page = client.get(f"/projects/{project_id}")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="no-models"' in html
    assert "download-model" not in html
    for name in PLOTS:
        assert f"/projects/{project_id}/plots/{name}.svg" in html


def test_plots_are_svg_before_any_model(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    for name in PLOTS:
        response = client.get(f"/projects/{project_id}/plots/{name}.svg")
        assert response.status_code == 200, name
        assert response.mimetype == "image/svg+xml"
        assert response.get_data().lstrip().startswith(b"<?xml"), name


def test_dashboard_shows_model_metrics(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    add_model_version(database, project_id)

    html = client.get(f"/projects/{project_id}").get_data(as_text=True)

    assert 'id="model-versions"' in html
    assert "0.660" in html
    assert "± 0.030" in html
    assert 'id="per-class"' in html
    assert "0.847" in html
    assert "Download model v1" in html


def test_plots_with_model_name_the_labels(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, labels=(f"neg {XSS}", "useless", "positive"))
    add_model_version(database, project_id)
    label_map = {"-1": f"neg {XSS}", "0": "useless", "1": "positive"}
    import_rows(client, project_id, tweet_rows(9, labelled=9), label_map=label_map)

    matrix = client.get(f"/projects/{project_id}/plots/confusion-matrix.svg").get_data()
    curve = client.get(f"/projects/{project_id}/plots/learning-curve.svg").get_data()

    assert b"useless" in matrix
    assert b"macro-F1" in curve
    balance = client.get(f"/projects/{project_id}/plots/class-balance.svg").get_data()
    assert b"<img" not in balance
    assert b"neg &lt;img src=x onerror=alert(1)&gt;" in balance


def test_learning_curve_one_line_per_model(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    add_model_version(database, project_id)
    add_rich_version(database, project_id)

    curve = client.get(f"/projects/{project_id}/plots/learning-curve.svg").get_data()

    # Two recipes are two lines, so the change of recipe draws no jump between them.
    assert b"macro-F1, tfidf-linear" in curve
    assert b"macro-F1, tfidf-mlp" in curve
    assert b"accuracy, tfidf-mlp" in curve


def test_unknown_plot_is_404(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    response = client.get(f"/projects/{project_id}/plots/pie.svg")

    assert response.status_code == 404


def test_models_api_lists_versions(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    add_model_version(database, project_id)

    models = client.get(f"/api/v1/projects/{project_id}/models").get_json()["models"]

    assert len(models) == 1
    assert models[0]["version"] == 1
    assert models[0]["macro_f1"] == 0.66
    assert models[0]["macro_f1_std"] == 0.03
    assert models[0]["is_current"] is True


def test_current_model_downloads_as_attachment(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, name="My tweets/2018")
    weights = add_model_version(database, project_id)

    response = client.get(f"/api/v1/projects/{project_id}/models/current/download")

    assert response.status_code == 200
    assert response.get_data() == weights
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert "My-tweets-2018-v1.lnlmodel" in disposition


def test_model_download_takes_the_model_id(client: FlaskClient, database: Database) -> None:
    # Another project's versions make ids and version numbers differ.
    other = make_project(database, name="other")
    for version in (1, 2):
        add_model_version(database, other, version)
    project_id = make_project(database, name="tweets")
    add_model_version(database, project_id, 1)
    add_model_version(database, project_id, 2)
    models = client.get(f"/api/v1/projects/{project_id}/models").get_json()["models"]
    first = next(model for model in models if model["version"] == 1)
    assert first["id"] != 1

    detail = client.get(f"/api/v1/projects/{project_id}/models/{first['id']}").get_json()
    response = client.get(f"/api/v1/projects/{project_id}/models/{first['id']}/download")

    assert detail["model"]["version"] == 1
    assert response.status_code == 200
    assert response.get_data() == b"model file 1"
    assert "tweets-v1.lnlmodel" in response.headers["Content-Disposition"]
    page = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert f"/api/v1/projects/{project_id}/models/{first['id']}/download" in page
    # The current model's button names version 2 and links to that version's id, so a newer
    # model trained while the page is open does not change what it downloads.
    current = next(model for model in models if model["version"] == 2)
    link = f"/api/v1/projects/{project_id}/models/{current['id']}/download"
    assert f'href="{link}">Download model v2<' in page


def test_model_download_without_model_is_404(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    current = client.get(f"/api/v1/projects/{project_id}/models/current/download")
    numbered = client.get(f"/api/v1/projects/{project_id}/models/3/download")

    assert current.status_code == 404
    assert "no trained model yet" in current.get_json()["error"]["message"]
    assert numbered.status_code == 404


def test_export_csv_downloads_labelled_rows(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    import_rows(client, project_id, tweet_rows(12, labelled=6))

    started = client.post(
        f"/api/v1/projects/{project_id}/exports",
        json={"format": "csv"},
        headers=api_headers(client),
    )
    assert started.status_code == 202
    job_id = started.get_json()["job_id"]
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert job["status"] == "done"
    # The server's file path stays on the server.
    assert "path" not in job["result"]
    assert job["result"]["rows"] == 6
    response = client.get(f"/api/v1/exports/{job_id}/download")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 6
    assert {row["label"] for row in rows} == {"negative", "useless", "positive"}


def test_export_jsonl_downloads(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    import_rows(client, project_id, tweet_rows(6, labelled=3))
    job_id = client.post(
        f"/api/v1/projects/{project_id}/exports",
        json={"format": "jsonl"},
        headers=api_headers(client),
    ).get_json()["job_id"]

    response = client.get(f"/api/v1/exports/{job_id}/download")

    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(lines) == 3
    assert lines[0]["label"] == "negative"


def test_export_with_bad_format_is_422(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    response = client.post(
        f"/api/v1/projects/{project_id}/exports",
        json={"format": "xml"},
        headers=api_headers(client),
    )

    assert response.status_code == 422


def test_missing_resources_are_json_404(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    import_job = import_rows(client, project_id, tweet_rows(3, labelled=0))
    missing_job = str(uuid.uuid4())
    for path in [
        f"/api/v1/exports/{missing_job}/download",
        f"/api/v1/exports/{import_job['id']}/download",
        f"/api/v1/jobs/{missing_job}",
        "/api/v1/projects/999",
        "/api/v1/projects/999/models",
        "/api/v1/projects/999/models/current/download",
        "/api/v1/projects/999/items/next",
        "/api/v1/projects/999/progress",
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["status"] == 404, path


def test_export_of_missing_project_is_404(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/projects/999/exports", json={"format": "csv"}, headers=api_headers(client)
    )

    assert response.status_code == 404


def test_label_page_has_one_button_per_label(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, labels=("spam", f"ham {XSS}"))

    html = client.get(f"/projects/{project_id}/label").get_data(as_text=True)

    assert html.count('class="btn label-button"') == 2
    assert 'data-key="1"' in html
    assert 'data-key="2"' in html
    assert "js/label.js" in html
    assert XSS not in html


RICH_METRICS = {
    **METRICS,
    "fold_macro_f1": [0.62, 0.66, 0.70],
    "n_splits": 3,
    "ece": 0.04,
    "calibration": {
        "method": "temperature",
        "scaler": {"method": "temperature", "temperature": 0.7, "platt_a": 1.0, "platt_b": 0.0},
        "ece_before": 0.09,
        "ece_after": 0.04,
        "candidates": {"none": 0.09, "temperature": 0.04},
        "curve_before": {
            "bin_edges": [0.0, 0.5, 1.0],
            "confidence": [0.4, 0.8],
            "accuracy": [0.5, 0.9],
            "count": [10, 30],
            "ece": 0.09,
        },
        "curve_after": {
            "bin_edges": [0.0, 0.5, 1.0],
            "confidence": [0.45, None],
            "accuracy": [0.5, None],
            "count": [40, 0],
            "ece": 0.04,
        },
    },
    "network": {
        "architecture": "sparse 3000 → 64 → 3, dropout 0.3",
        "training_curve": [
            {"epoch": 1.0, "train_loss": 1.0, "validation_loss": 0.9, "validation_macro_f1": 0.5},
            {"epoch": 2.0, "train_loss": 0.7, "validation_loss": 0.8, "validation_macro_f1": 0.6},
        ],
        "best_epoch": 2,
    },
    "prediction_change": {"previous_version": 1, "agreement": 0.9, "kappa": 0.8, "n_items": 40},
}


def add_rich_version(database: Database, project_id: int, version: int = 2) -> int:
    """Store a neural-network version with calibration and prediction change; return its id."""
    with database.session() as session:
        row = ModelVersion(
            project_id=project_id,
            version=version,
            model_name="tfidf-mlp",
            params={"recipe": "tfidf-mlp", "featurizer": "tfidf", "classifier": "mlp"},
            n_labels=80,
            class_counts={"negative": 20, "useless": 40, "positive": 20},
            metrics=RICH_METRICS,
            weights=b"weights",
            training_seconds=2.0,
        )
        session.add(row)
        session.flush()
        return row.id


def test_dashboard_gain_rounding_to_zero_has_no_minus(
    client: FlaskClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = make_project(database, model_name="tfidf-linear")
    real_report = models_service.stopping_report

    def report(db: Database, project: int) -> dict[str, Any]:
        return {**real_report(db, project), "estimated_gain_next_100": -0.0002}

    monkeypatch.setattr(models_service, "stopping_report", report)

    html = client.get(f"/projects/{project_id}").get_data(as_text=True)

    assert 'id="stopping-gain">+0.000 macro-F1' in html


def test_dashboard_stopping_panel(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, model_name="tfidf-linear")

    html = client.get(f"/projects/{project_id}").get_data(as_text=True)

    assert "Is labelling still paying off?" in html
    assert 'id="stopping-verdict">Too early to tell<' in html
    assert 'class="badge text-bg-secondary" id="stopping-verdict"' in html
    for name in ("stopping-curve", "prediction-change", "reliability"):
        assert f"/projects/{project_id}/plots/{name}.svg" in html
    assert 'id="embeddings-panel"' not in html


def test_stopping_panel_pooled_score(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    model_id = add_rich_version(database, project_id)
    with database.session() as session:
        version = session.get(ModelVersion, model_id)
        assert version is not None
        # Pooled out-of-fold macro-F1 differs from the mean of the folds (0.660).
        version.metrics = {**RICH_METRICS, "macro_f1": 0.69}
        project = session.get(Project, project_id)
        assert project is not None
        project.current_model_id = model_id

    html = client.get(f"/projects/{project_id}").get_data(as_text=True)

    assert 'id="current-macro-f1">0.690<' in html
    assert "0.660 ± 0.040 (spread over the folds) at 80 labels" in html
    assert "the headline's 0.690 scores the predictions of all folds together" in html


def test_dashboard_plots_with_versions(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    add_model_version(database, project_id)
    add_rich_version(database, project_id)

    curve = client.get(f"/projects/{project_id}/plots/stopping-curve.svg").get_data()
    change = client.get(f"/projects/{project_id}/plots/prediction-change.svg").get_data()

    assert b"95% band over folds" in curve
    assert b"kappa" in change
    assert b"agreement" in change


def test_model_page_shows_network(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    model_id = add_rich_version(database, project_id)

    page = client.get(f"/projects/{project_id}/models/{model_id}")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Model version 2" in html
    assert "sparse 3000 → 64 → 3, dropout 0.3" in html
    assert "weights of epoch 2 of 2 kept" in html
    assert 'id="per-class"' in html and "0.847" in html
    assert "0.620, 0.660, 0.700" in html
    assert "0.090 uncalibrated, 0.040 calibrated" in html
    assert "Agreement with version 1" in html
    for name in ("confusion-matrix", "reliability", "training-curve"):
        plot = client.get(f"/projects/{project_id}/models/{model_id}/plots/{name}.svg")
        assert plot.status_code == 200, name
        assert plot.mimetype == "image/svg+xml"
        assert f"/projects/{project_id}/models/{model_id}/plots/{name}.svg" in html
    reliability = client.get(f"/projects/{project_id}/models/{model_id}/plots/reliability.svg")
    assert b"after temperature scaling (ECE 0.040)" in reliability.get_data()


def test_model_page_without_network(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    add_model_version(database, project_id)
    with database.session() as session:
        model_id = session.scalar(sa.select(ModelVersion.id))

    html = client.get(f"/projects/{project_id}/models/{model_id}").get_data(as_text=True)

    assert "Neural network" not in html
    assert "training-curve.svg" not in html


def test_model_page_shows_majority_baseline(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    model_id = add_rich_version(database, project_id)

    html = client.get(f"/projects/{project_id}/models/{model_id}").get_data(as_text=True)

    # 40 of 80 labels are "useless": accuracy 0.5, macro-F1 (2 * 0.5 / 1.5) / 3.
    assert "Always “useless”" in html
    assert "accuracy 0.500, macro-F1 0.222" in html
    assert 'id="below-baseline"' not in html


def test_model_page_warns_below_baseline(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    with database.session() as session:
        row = ModelVersion(
            project_id=project_id,
            version=1,
            model_name="embedding-mlp",
            n_labels=100,
            class_counts={"<b>spam</b>": 90, "ham": 10},
            metrics={**METRICS, "accuracy": 0.7, "macro_f1": 0.3},
            weights=b"weights",
        )
        session.add(row)
        session.flush()
        model_id = row.id

    html = client.get(f"/projects/{project_id}/models/{model_id}").get_data(as_text=True)

    assert 'id="below-baseline"' in html
    assert "(0.300) is no better than always answering “&lt;b&gt;spam&lt;/b&gt;”" in html
    assert "<b>spam</b>" not in html


def test_model_page_of_other_project_is_404(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    other_id = make_project(database, name="other")
    model_id = add_rich_version(database, other_id)

    assert client.get(f"/projects/{project_id}/models/{model_id}").status_code == 404
    assert client.get(f"/projects/{project_id}/models/999").status_code == 404
    api = client.get(f"/api/v1/projects/{project_id}/models/{model_id}")
    assert api.status_code == 404
    assert "not found" in api.get_json()["error"]["message"]


def test_model_api_matches_page_data(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    model_id = add_rich_version(database, project_id)

    body = client.get(f"/api/v1/projects/{project_id}/models/{model_id}").get_json()

    assert body["model"]["id"] == model_id
    assert body["settings"]["classifier"] == "mlp"
    assert body["network"]["architecture"].startswith("sparse 3000")
    assert body["confusion_matrix"] == METRICS["confusion_matrix"]
    assert body["calibration"]["method"] == "temperature"
    assert body["fold_macro_f1"] == [0.62, 0.66, 0.70]
    assert [row["label"] for row in body["per_class"]] == ["negative", "useless", "positive"]


def test_stopping_api(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    add_model_version(database, project_id)
    add_rich_version(database, project_id)

    body = client.get(f"/api/v1/projects/{project_id}/stopping").get_json()

    assert body["verdict"] == "too early to tell"
    assert body["n_versions"] == 2
    # Version 2 changed the model (a neural network), so the curve starts again with it.
    assert [point["n_labels"] for point in body["curve"]] == [80]
    assert body["prediction_changes"][0]["kappa"] == 0.8
    assert "trained at one label count so far, and a trend needs 3" in body["message"]
    assert body["fitted"] == []


def test_stopping_curve_of_one_setup(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    for version in (1, 2, 3):
        add_model_version(database, project_id, version=version)

    body = client.get(f"/api/v1/projects/{project_id}/stopping").get_json()

    assert [point["n_labels"] for point in body["curve"]] == [50, 100, 150]
    assert body["fitted"]
    assert body["fitted"][-1]["n_labels"] == 250


def test_stopping_two_points_fit_no_curve(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    for version in (1, 2):
        add_model_version(database, project_id, version=version)

    body = client.get(f"/api/v1/projects/{project_id}/stopping").get_json()

    assert [point["n_labels"] for point in body["curve"]] == [50, 100]
    assert body["fitted"] == []
    assert "2 different label counts" in body["message"]


def test_auto_choice_shown_with_the_version(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    add_model_version(database, project_id)
    with database.session() as session:
        row = session.scalars(
            sa.select(ModelVersion).where(ModelVersion.project_id == project_id)
        ).one()
        row.model_name = "auto"
        row.params = {"recipe": "auto", "auto": {"chosen": "tfidf-embedding-knn"}}
        model_id = row.id

    models = client.get(f"/api/v1/projects/{project_id}/models").get_json()["models"]
    dashboard = client.get(f"/projects/{project_id}").get_data(as_text=True)
    page = client.get(f"/projects/{project_id}/models/{model_id}").get_data(as_text=True)

    assert models[0]["auto_choice"] == "tfidf-embedding-knn"
    assert "(chose tfidf-embedding-knn)" in dashboard
    assert "auto (chose tfidf-embedding-knn)" in page


def test_setup_series_keeps_latest_per_label_count() -> None:
    versions = [
        {"model_name": "tfidf-linear", "n_labels": 50, "macro_f1": 0.5},
        {"model_name": "tfidf-linear", "n_labels": 100, "macro_f1": 0.6},
        {"model_name": "tfidf-linear", "n_labels": 50, "macro_f1": 0.55},
        {"model_name": "tfidf-mlp", "n_labels": 100, "macro_f1": 0.4, "embeddings_status": None},
        {"model_name": "tfidf-mlp", "n_labels": 100, "embeddings_status": "pending"},
    ]

    series = plots.setup_series(versions)

    assert list(series) == ["tfidf-linear", "tfidf-mlp", "tfidf-mlp (TF-IDF only)"]
    assert [v["macro_f1"] for v in series["tfidf-linear"]] == [0.55, 0.6]
    assert [v["macro_f1"] for v in series["tfidf-mlp"]] == [0.4]
