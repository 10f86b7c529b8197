"""The stopping report and the model detail read from stored model versions."""

from __future__ import annotations

from typing import Any

import pytest

from labelandlearn.errors import NotFoundError
from labelandlearn.services import dashboard
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Label, ModelVersion, Project


def _project(db: Database, name: str = "tweets") -> int:
    with db.session() as session:
        project = Project(
            name=name,
            labels=[Label(name=n, key=str(i + 1), position=i) for i, n in enumerate(["a", "b"])],
        )
        session.add(project)
        session.flush()
        return project.id


def _add_versions(db: Database, project_id: int, rows: list[dict[str, Any]]) -> list[int]:
    """Store one version per row: n_labels, fold scores and optionally kappa."""
    ids = []
    with db.session() as session:
        for number, row in enumerate(rows, start=1):
            metrics: dict[str, Any] = {
                "macro_f1": sum(row["folds"]) / len(row["folds"]),
                "fold_macro_f1": row["folds"],
                "labels": ["a", "b"],
                "per_class": {"a": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 5}},
                "confusion_matrix": [[4, 1], [1, 4]],
            }
            if "kappa" in row:
                metrics["prediction_change"] = {
                    "previous_version": number - 1,
                    "agreement": row.get("agreement", 0.99),
                    "kappa": row["kappa"],
                    "n_items": 500,
                }
            version = ModelVersion(
                project_id=project_id,
                version=number,
                model_name="tfidf-linear",
                params={"recipe": "tfidf-linear", "featurizer": "tfidf", "classifier": "linear"},
                n_labels=row["n_labels"],
                class_counts={"a": row["n_labels"] // 2, "b": row["n_labels"] // 2},
                metrics=metrics,
                weights=b"weights",
            )
            session.add(version)
            session.flush()
            ids.append(version.id)
        session.get(Project, project_id).current_model_id = ids[-1]  # type: ignore[union-attr]
    return ids


def test_stopping_without_versions(db: Database) -> None:
    report = dashboard.stopping_report(db, _project(db))

    assert report["verdict"] == "too early to tell"
    assert report["n_versions"] == 0
    assert report["curve"] == []
    assert report["prediction_changes"] == []
    assert report["fitted"] == []


def test_stopping_rising_curve_still_improving(db: Database) -> None:
    project_id = _project(db)
    _add_versions(
        db,
        project_id,
        [
            {"n_labels": 50, "folds": [0.40, 0.45, 0.50]},
            {"n_labels": 100, "folds": [0.55, 0.60, 0.58], "kappa": 0.5},
            {"n_labels": 150, "folds": [0.66, 0.68, 0.70], "kappa": 0.6},
            {"n_labels": 200, "folds": [0.74, 0.75, 0.76], "kappa": 0.7},
        ],
    )

    report = dashboard.stopping_report(db, project_id)

    assert report["verdict"] == "still improving"
    assert report["n_labels"] == 200
    assert report["latest_score"] == pytest.approx(0.75)
    assert report["estimated_gain_next_100"] >= 0.01
    assert [point["n_labels"] for point in report["curve"]] == [50, 100, 150, 200]
    assert report["curve"][0]["low"] < report["curve"][0]["mean"] < report["curve"][0]["high"]
    assert [change["kappa"] for change in report["prediction_changes"]] == [0.5, 0.6, 0.7]
    assert report["fitted"][-1]["n_labels"] == 300


def test_stopping_flat_curve_stable(db: Database) -> None:
    project_id = _project(db)
    folds = [0.80, 0.81, 0.82]
    _add_versions(
        db,
        project_id,
        [
            {"n_labels": 500, "folds": folds},
            {"n_labels": 600, "folds": folds, "kappa": 0.995},
            {"n_labels": 700, "folds": folds, "kappa": 0.996},
            {"n_labels": 800, "folds": folds, "kappa": 0.998},
        ],
    )

    report = dashboard.stopping_report(db, project_id)

    assert report["verdict"] == "stable"
    assert report["estimated_gain_next_100"] < 0.0025
    assert report["recent_kappas"] == [0.995, 0.996, 0.998]
    assert report["message"].startswith("Stable.")


def test_model_detail_contents(db: Database) -> None:
    project_id = _project(db)
    first, second = _add_versions(
        db,
        project_id,
        [
            {"n_labels": 10, "folds": [0.5, 0.6]},
            {"n_labels": 20, "folds": [0.7, 0.8], "kappa": 0.4},
        ],
    )

    detail = dashboard.model_detail(db, project_id, second)

    assert detail["model"]["id"] == second
    assert detail["model"]["version"] == 2
    assert detail["model"]["is_current"] is True
    assert detail["settings"]["classifier"] == "linear"
    assert detail["labels"] == ["a", "b"]
    assert detail["fold_macro_f1"] == [0.7, 0.8]
    assert detail["confusion_matrix"] == [[4, 1], [1, 4]]
    assert detail["per_class"][0]["f1"] == 0.85
    assert detail["per_class"][1]["f1"] is None
    assert detail["prediction_change"]["kappa"] == 0.4
    assert detail["network"] is None
    assert dashboard.model_detail(db, project_id, first)["model"]["is_current"] is False


def test_majority_baseline_scores() -> None:
    baseline = dashboard.majority_baseline({"useless": 80, "positive": 15, "negative": 5}, "upn")
    assert baseline is not None
    assert baseline["label"] == "useless"
    assert baseline["accuracy"] == pytest.approx(0.8)
    # F1 of "useless" is 2 * 0.8 / 1.8; the other two labels score 0.
    assert baseline["macro_f1"] == pytest.approx(2 * 0.8 / 1.8 / 3)
    assert dashboard.majority_baseline({}, ["a", "b"]) is None


def test_model_detail_has_baseline(db: Database) -> None:
    project_id = _project(db)
    (model_id,) = _add_versions(db, project_id, [{"n_labels": 10, "folds": [0.5, 0.6]}])
    baseline = dashboard.model_detail(db, project_id, model_id)["baseline"]
    assert baseline["accuracy"] == pytest.approx(0.5)
    assert baseline["macro_f1"] == pytest.approx(1 / 3)


def test_model_detail_of_other_project(db: Database) -> None:
    project_id = _project(db)
    other_id = _project(db, "other")
    (model_id,) = _add_versions(db, other_id, [{"n_labels": 10, "folds": [0.5]}])

    with pytest.raises(NotFoundError, match=f"model {model_id} of project {project_id} not found"):
        dashboard.model_detail(db, project_id, model_id)
