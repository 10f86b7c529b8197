"""Training, scoring, the online model cache and the learning jobs, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from learning_helpers import corpus, create_project

from labelandlearn.errors import NotEnoughLabelsError, NotFoundError
from labelandlearn.jobs.base import create_job, run_job
from labelandlearn.learning import calibration, training
from labelandlearn.learning.base import MODEL_RECIPES, ModelRecipe, TextModel, recipe_names
from labelandlearn.learning.calibration import choose_calibration
from labelandlearn.learning.online import ModelCache
from labelandlearn.learning.scoring import score_project
from labelandlearn.learning.training import train_project
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Job, ModelVersion, Project


def _labelled_project(db: Database, n_unlabelled: int = 6, strategy: str = "margin") -> int:
    texts, labels = corpus(per_class=8)
    extra = [f"unlabelled tweet about ethereum number {i}" for i in range(n_unlabelled)]
    return create_project(db, texts + extra, labels + [None] * n_unlabelled, strategy=strategy)


def _scores(db: Database, project_id: int) -> list[float | None]:
    with db.session() as session:
        return list(
            session.scalars(
                sa.select(Item.score)
                .where(Item.project_id == project_id, Item.label_id.is_(None))
                .order_by(Item.position)
            )
        )


def test_train_stores_version_and_sets_current(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    project_id = _labelled_project(db)
    with caplog.at_level(logging.INFO, logger="labelandlearn.learning.training"):
        version_id = train_project(db, project_id)
    assert sum("trained project=" in r.getMessage() for r in caplog.records) == 1
    with db.session() as session:
        project = session.get(Project, project_id)
        version = session.get(ModelVersion, version_id)
        assert project is not None and version is not None
        assert project.current_model_id == version_id
        assert version.version == 1
        assert version.model_name == "tfidf-embedding-linear"
        assert version.n_labels == 24
        assert version.class_counts == {"negative": 8, "useless": 8, "positive": 8}
        assert version.metrics is not None and version.metrics["n_splits"] == 5
        assert version.params["recipe"] == "tfidf-embedding-linear"
        assert len(version.weights) > 100
    assert train_project(db, project_id) != version_id


def test_too_few_labels_keeps_previous_model(db: Database) -> None:
    project_id = _labelled_project(db)
    first = train_project(db, project_id)
    with db.session() as session:
        session.execute(
            sa.update(Item)
            .where(Item.project_id == project_id, Item.label_id.is_not(None))
            .values(label_id=None)
        )
    with pytest.raises(NotEnoughLabelsError, match=r"at least 2 .*negative \(0\)"):
        train_project(db, project_id)
    with db.session() as session:
        assert session.get(Project, project_id).current_model_id == first  # type: ignore[union-attr]
        assert session.scalar(sa.select(sa.func.count(ModelVersion.id))) == 1


def test_class_without_examples_keeps_previous_model(db: Database) -> None:
    project_id = _labelled_project(db)
    first = train_project(db, project_id)
    with db.session() as session:
        negative_id = session.get(Project, project_id).labels[0].id  # type: ignore[union-attr]
        session.execute(sa.update(Item).where(Item.label_id == negative_id).values(label_id=None))
    with pytest.raises(NotEnoughLabelsError, match=r"negative \(0\)"):
        train_project(db, project_id)
    with db.session() as session:
        assert session.get(Project, project_id).current_model_id == first  # type: ignore[union-attr]


def test_train_unknown_project(db: Database) -> None:
    with pytest.raises(NotFoundError, match="project 999 not found"):
        train_project(db, 999)


def test_scoring_writes_scores(db: Database) -> None:
    project_id = _labelled_project(db)
    train_project(db, project_id)
    assert score_project(db, project_id) == 6
    scores = _scores(db, project_id)
    assert all(score is not None for score in scores)
    assert len(set(scores)) > 1


@pytest.mark.parametrize("strategy", ["file-order", "random"])
def test_scoring_without_model(db: Database, strategy: str) -> None:
    project_id = _labelled_project(db, strategy=strategy)
    assert score_project(db, project_id) == 6
    scores = _scores(db, project_id)
    assert all(score is not None for score in scores)
    if strategy == "file-order":
        assert scores == sorted(scores, reverse=True)


def test_margin_without_model_leaves_scores(db: Database) -> None:
    project_id = _labelled_project(db)
    before = _scores(db, project_id)
    assert score_project(db, project_id) == 0
    assert _scores(db, project_id) == before


def test_train_job_trains_then_scores(db: Database) -> None:
    project_id = _labelled_project(db)
    job_id = create_job(db, "train", project_id)
    run_job(db, job_id)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.status == "done", job.error
        assert job.result is not None and job.result["items_scored"] == 6
    assert None not in _scores(db, project_id)


def test_train_job_failure_message(db: Database) -> None:
    project_id = create_project(db, ["only one text"], ["useless"])
    job_id = create_job(db, "train", project_id)
    run_job(db, job_id)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed"
        assert "negative (0)" in (job.error or "")


def test_model_cache_reloads_on_new_version(db: Database) -> None:
    project_id = _labelled_project(db)
    cache = ModelCache()
    assert cache.get(db, project_id) is None
    first = train_project(db, project_id)
    cached = cache.get(db, project_id)
    assert cached is not None and cached[1] == first
    second = train_project(db, project_id)
    reloaded = cache.get(db, project_id)
    assert reloaded is not None and reloaded[1] == second


def test_model_cache_learn_changes_predictions(db: Database) -> None:
    project_id = _labelled_project(db)
    train_project(db, project_id)
    cache = ModelCache()
    text = "zebra quartz unseen words"
    before = cache.predict(db, project_id, [text])
    assert before is not None
    for _ in range(5):
        assert cache.learn(db, project_id, text, "negative")
    after = cache.predict(db, project_id, [text])
    assert after is not None
    assert after[0][0, 0] > before[0][0, 0]
    assert after[1] == ["negative", "useless", "positive"]


def test_model_cache_cold_start(db: Database) -> None:
    project_id = _labelled_project(db)
    cache = ModelCache()
    assert cache.predict(db, project_id, ["x"]) is None
    assert cache.learn(db, project_id, "price rally moon", "positive")
    result = cache.predict(db, project_id, ["price rally moon"])
    assert result is not None
    assert result[2] is None
    assert not cache.learn(db, project_id, "text", "no-such-label")


def _metrics(db: Database, version_id: int) -> dict[str, Any]:
    with db.session() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None and version.metrics is not None
        return dict(version.metrics)


def test_train_stores_folds_and_calibration(db: Database) -> None:
    texts, labels = corpus(per_class=8)
    project_id = create_project(db, texts, labels)

    metrics = _metrics(db, train_project(db, project_id))

    assert len(metrics["fold_macro_f1"]) == metrics["n_splits"] == 5
    calibration = metrics["calibration"]
    assert calibration["method"] in ("none", "temperature")
    assert len(calibration["curve_before"]["count"]) == 10
    assert sum(calibration["curve_before"]["count"]) == 24
    assert metrics["ece"] == calibration["ece_after"]
    assert "prediction_change" not in metrics


def test_calibration_wraps_stored_classifier(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    def choose_temperature(proba: np.ndarray, y: np.ndarray) -> calibration.CalibrationReport:
        report = choose_calibration(proba, y)
        return dataclasses.replace(report, scaler=calibration.fit_temperature(proba, y))

    monkeypatch.setattr(calibration, "choose_calibration", choose_temperature)
    texts, labels = corpus(per_class=8)
    project_id = create_project(db, texts, labels)

    version_id = train_project(db, project_id)

    assert _metrics(db, version_id)["calibration"]["method"] == "temperature"
    with db.session() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        model = TextModel.from_bytes(version.weights)
        assert version.params["calibration"]["method"] == "temperature"
    assert model.classifier.name == "calibrated"
    proba = model.predict_proba(["price crash dump ethereum"])
    assert proba.shape == (1, 3)
    assert abs(float(proba.sum()) - 1.0) < 1e-9


def test_second_version_stores_prediction_change(db: Database) -> None:
    project_id = _labelled_project(db, n_unlabelled=9)
    train_project(db, project_id)

    metrics = _metrics(db, train_project(db, project_id))

    change = metrics["prediction_change"]
    assert change["previous_version"] == 1
    assert change["n_items"] == 9
    # Same labels, same data: the two versions predict the same labels.
    assert change["agreement"] == 1.0
    assert change["kappa"] == 1.0


def test_prediction_change_after_new_labels(db: Database) -> None:
    project_id = _labelled_project(db, n_unlabelled=12)
    train_project(db, project_id)
    with db.session() as session:
        useless_id = session.get(Project, project_id).labels[1].id  # type: ignore[union-attr]
        session.execute(
            sa.update(Item)
            .where(Item.project_id == project_id, Item.label_id.is_(None))
            .where(Item.position < 24 + 4)
            .values(label_id=useless_id)
        )

    change = _metrics(db, train_project(db, project_id))["prediction_change"]

    assert change["n_items"] == 8
    assert 0.0 <= change["agreement"] <= 1.0
    assert -1.0 <= change["kappa"] <= 1.0


def test_prediction_sample_is_capped(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "PREDICTION_SAMPLE_SIZE", 4)
    project_id = _labelled_project(db, n_unlabelled=10)
    train_project(db, project_id)

    change = _metrics(db, train_project(db, project_id))["prediction_change"]

    assert change["n_items"] == 4


def test_neural_network_metrics_stored(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    recipe_names()
    recipe = ModelRecipe(
        name="test-tfidf-mlp",
        featurizer="tfidf",
        classifier="mlp",
        classifier_params={"hidden_sizes": [8], "max_epochs": 3},
    )
    monkeypatch.setitem(MODEL_RECIPES, recipe.name, recipe)
    texts, labels = corpus(per_class=8)
    project_id = create_project(db, texts, labels)
    with db.session() as session:
        session.execute(
            sa.update(Project).where(Project.id == project_id).values(model_name=recipe.name)
        )

    network = _metrics(db, train_project(db, project_id))["network"]

    assert network["architecture"].startswith("sparse ")
    assert "→ 8 → 3" in network["architecture"]
    assert len(network["training_curve"]) == 3
    assert "train_loss" in network["training_curve"][0]


def test_diverse_strategy_scores_with_features(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = corpus(per_class=40)
    half: list[str | None] = [label if i % 2 else None for i, label in enumerate(labels)]
    project_id = create_project(sqlite_db, texts, half, strategy="diverse-margin")
    train_project(sqlite_db, project_id)
    from labelandlearn.learning import scoring

    received: list[object] = []
    original_get = scoring.get_strategy

    def spying_get_strategy(name: str) -> object:
        strategy = original_get(name)
        original_score = strategy.score

        def score(proba: object, **options: object) -> object:
            received.append(options.get("features"))
            return original_score(proba, **options)  # type: ignore[arg-type]

        strategy.score = score  # type: ignore[method-assign]
        return strategy

    monkeypatch.setattr(scoring, "get_strategy", spying_get_strategy)
    assert score_project(sqlite_db, project_id) == 60
    assert len(received) == 1
    assert callable(received[0])
