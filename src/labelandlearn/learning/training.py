"""Full training of a project's model from the database, stored as a new model version.

Besides the cross-validated metrics, each version's ``metrics`` stores what the dashboard's
stopping signal and model page read. That is the per-fold macro-F1, the calibration chosen from
the out-of-fold probabilities with its reliability curve and ECE, and the change in predictions
on a fixed sample of unlabelled items against the previous version. A neural network adds its
architecture and training curve, and a recipe with embeddings notes whether they were used.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from labelandlearn.errors import LabelAndLearnError, NotFoundError
from labelandlearn.learning.base import ModelRecipe, ProgressCallback, TextModel, get_recipe
from labelandlearn.learning.calibration import calibrate_model
from labelandlearn.learning.embeddings import (
    EmbeddingCache,
    backend_available,
    count_missing,
    text_sha1,
)
from labelandlearn.learning.evaluation import (
    check_class_counts,
    cross_validate_features_with_proba,
    cross_validate_with_proba,
)
from labelandlearn.learning.project_embeddings import (
    model_embedding_spec,
    recipe_embedding_spec,
    tfidf_only_recipe,
)
from labelandlearn.learning.stopping import prediction_change
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Label, ModelVersion, Project

logger = logging.getLogger(__name__)

# Cross-validation needs 2 examples of a class to put one on each side of a split.
MIN_LABELS_PER_CLASS = 2
# Unlabelled items on which successive versions' predictions are compared. The sample is the
# unlabelled items with the smallest text hashes: effectively random, and the same items for
# every version as long as they stay unlabelled.
PREDICTION_SAMPLE_SIZE = 5000


@dataclass
class TrainingData:
    """The labelled items (texts, label names) and the texts of all other items."""

    project_name: str
    model_name: str
    labels: list[str]
    texts: list[str]
    label_names: list[str]
    unlabelled_texts: list[str]
    sample_texts: list[str]


def load_training_data(session: Session, project_id: int) -> TrainingData:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"project {project_id} not found")
    labels = session.execute(
        sa.select(Label.id, Label.name)
        .where(Label.project_id == project_id)
        .order_by(Label.position, Label.id)
    ).all()
    name_of = {label_id: name for label_id, name in labels}
    rows = session.execute(
        sa.select(Item.text, Item.label_id, Item.text_hash)
        .where(Item.project_id == project_id)
        .order_by(Item.id)
    ).all()
    texts, label_names, unlabelled, hashed = [], [], [], []
    for text, label_id, text_hash in rows:
        if label_id is not None and label_id in name_of:
            texts.append(text)
            label_names.append(name_of[label_id])
        else:
            unlabelled.append(text)
            hashed.append((text_hash or "", text))
    hashed.sort()
    return TrainingData(
        project_name=project.name,
        model_name=project.model_name,
        labels=[name for _, name in labels],
        texts=texts,
        label_names=label_names,
        unlabelled_texts=unlabelled,
        sample_texts=[text for _, text in hashed[:PREDICTION_SAMPLE_SIZE]],
    )


def train_project(db: Database, project_id: int, progress: ProgressCallback | None = None) -> int:
    """Train the project's model on its labelled items, store it as the current model version.

    Raises NotEnoughLabelsError, naming the classes short of examples, before anything is
    stored, so the previous model stays current. Returns the new ``model_versions.id``.
    """
    return train_project_model(db, project_id, progress)[0]


def train_project_model(
    db: Database, project_id: int, progress: ProgressCallback | None = None
) -> tuple[int, TextModel]:
    """As ``train_project``, and return the trained model with the version id.

    The model in memory keeps the word cache that its TF-IDF fit built over every item. Scoring
    the unlabelled items with it skips analysing their words again; a model read back from the
    database would analyse them.
    """
    report = progress or (lambda fraction, message: None)
    with db.session() as session:
        data = load_training_data(session, project_id)
    class_counts = check_class_counts(data.labels, data.label_names, MIN_LABELS_PER_CLASS)
    recipe, embedding_note = _recipe_for_cached_embeddings(
        project_id, get_recipe(data.model_name), data
    )

    started = time.perf_counter()
    model, metrics, oof_proba = _fit_and_evaluate(recipe, data, report)
    report(0.85, "calibrating probabilities")
    model = _calibrate(model, metrics, oof_proba, data.label_names)
    _add_network_metrics(model, metrics)
    if embedding_note:
        metrics["embeddings"] = embedding_note
    report(0.88, "comparing predictions with the previous version")
    change = _prediction_change(db, project_id, model, data.sample_texts)
    if change:
        metrics["prediction_change"] = change
    report(0.9, "saving the model")
    version_id, version = _store_version(
        db, project_id, model, recipe.name, class_counts, metrics, time.perf_counter() - started
    )
    logger.info(
        "trained project=%s model_version=%s version=%d model=%s labels=%d macro_f1=%.3f "
        "seconds=%.2f",
        project_id,
        version_id,
        version,
        recipe.name,
        len(data.texts),
        metrics["macro_f1"],
        time.perf_counter() - started,
    )
    return version_id, model


def _recipe_for_cached_embeddings(
    project_id: int, recipe: ModelRecipe, data: TrainingData
) -> tuple[ModelRecipe, dict[str, Any] | None]:
    """Return the recipe to train now and a note for the metrics when embeddings are pending.

    A recipe with embeddings trains on TF-IDF alone until every item of the project has a
    cached vector, because embedding inside the training job would hold it for minutes.
    """
    spec = recipe_embedding_spec(recipe)
    if spec is None or not backend_available(spec.backend):
        return recipe, None
    missing = count_missing(
        data.texts + data.unlabelled_texts, spec.backend, spec.model, spec.folder
    )
    if missing == 0:
        return recipe, {**spec.to_dict(), "status": "used", "missing": 0}
    logger.info(
        "project %s: %d texts have no %s embedding yet, so model %s trains on TF-IDF alone "
        "until every item is embedded (the embed job, or `labelandlearn embed`)",
        project_id,
        missing,
        spec.model,
        recipe.name,
    )
    return tfidf_only_recipe(recipe), {**spec.to_dict(), "status": "pending", "missing": missing}


def _fit_and_evaluate(
    recipe: ModelRecipe, data: TrainingData, report: ProgressCallback
) -> tuple[TextModel, dict[str, Any], np.ndarray]:
    """Fit the model on all labels and cross-validate it.

    Returns (model, metrics, out-of-fold probabilities with columns in label order).
    """
    if type(recipe).fit_model is not ModelRecipe.fit_model:
        # A recipe that picks its components from the data is cross-validated as a whole.
        report(0.05, "cross-validating")
        metrics, oof_proba = cross_validate_with_proba(
            recipe,
            data.texts,
            data.label_names,
            label_names=data.labels,
            unlabelled_texts=data.unlabelled_texts,
            progress=lambda fraction, message: report(0.05 + 0.6 * fraction, message),
        )
        report(0.7, "training on all labels")
        model = recipe.fit_model(
            data.labels, data.texts, data.label_names, unlabelled_texts=data.unlabelled_texts
        )
        return model, metrics, oof_proba
    # The featurizer learns no labels, so one fit on all texts serves the folds and the model.
    report(0.05, "computing features")
    model = recipe.build(data.labels)
    model.featurizer.fit(data.texts + data.unlabelled_texts)
    features = model.featurizer.transform(data.texts)
    report(0.3, "cross-validating")
    metrics, oof_proba = cross_validate_features_with_proba(
        model,
        features,
        data.label_names,
        progress=lambda fraction, message: report(0.3 + 0.45 * fraction, message),
    )
    report(0.75, "training on all labels")
    model.classifier.fit(features, model.encode_labels(data.label_names))
    return model, metrics, oof_proba


def _calibrate(
    model: TextModel, metrics: dict[str, Any], oof_proba: np.ndarray, label_names: list[str]
) -> TextModel:
    """Wrap the classifier in the scaler that lowers the out-of-fold ECE, if one does."""
    calibrated, calibration = calibrate_model(model, oof_proba, model.encode_labels(label_names))
    metrics["calibration"] = {
        "method": calibration.scaler.method,
        "scaler": dataclasses.asdict(calibration.scaler),
        "ece_before": calibration.ece_before,
        "ece_after": calibration.ece_after,
        "candidates": calibration.candidates,
        "curve_before": calibration.curve_before.to_dict(),
        "curve_after": calibration.curve_after.to_dict(),
    }
    metrics["ece"] = calibration.ece_after
    return calibrated


def _add_network_metrics(model: TextModel, metrics: dict[str, Any]) -> None:
    """Store a neural network's architecture and per-epoch training curve in the metrics."""
    classifier = getattr(model.classifier, "base_", model.classifier)
    architecture = getattr(classifier, "architecture", None)
    if architecture is None:
        return
    metrics["network"] = {
        "architecture": architecture(),
        "training_curve": list(getattr(classifier, "training_curve_", [])),
        "best_epoch": getattr(classifier, "best_epoch_", None),
    }


def _prediction_change(
    db: Database, project_id: int, model: TextModel, sample_texts: list[str]
) -> dict[str, Any] | None:
    """Compare the new model's predicted labels on the sample with the previous version's.

    The previous version's predictions are recomputed from its stored weights. Returns None
    for the first version, an empty sample, or a previous model that cannot be loaded.
    """
    if not sample_texts:
        return None
    with db.session() as session:
        previous = session.execute(
            sa.select(ModelVersion.id, ModelVersion.version, ModelVersion.weights)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version.desc())
            .limit(1)
        ).first()
    if previous is None:
        return None
    try:
        previous_model = TextModel.from_bytes(previous.weights)
        texts = _texts_without_embedding_work(previous_model, sample_texts)
        if not texts:
            return None
        before = previous_model.predict(texts)
    except LabelAndLearnError as exc:
        logger.warning(
            "project %s: predictions of model version %s not compared: %s",
            project_id,
            previous.version,
            exc,
        )
        return None
    change = prediction_change(before, model.predict(texts))
    return {
        "previous_version": previous.version,
        "previous_model_id": previous.id,
        "agreement": change.agreement,
        "kappa": change.kappa,
        "n_items": change.n_items,
    }


def _texts_without_embedding_work(model: TextModel, texts: list[str]) -> list[str]:
    """Return the texts the model can predict without embedding any: all, or the cached ones."""
    spec = model_embedding_spec(model)
    if spec is None:
        return texts
    cache = EmbeddingCache(spec.folder)
    cached = cache.present(f"{spec.backend}:{spec.model}", [text_sha1(t) for t in texts])
    return [text for text in texts if text_sha1(text) in cached]


def _store_version(
    db: Database,
    project_id: int,
    model: TextModel,
    model_name: str,
    class_counts: dict[str, int],
    metrics: dict[str, Any],
    seconds: float,
) -> tuple[int, int]:
    weights = model.to_bytes()
    with db.session() as session:
        project = session.get(Project, project_id, with_for_update=not db.is_sqlite)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        latest = session.scalar(
            sa.select(sa.func.max(ModelVersion.version)).where(
                ModelVersion.project_id == project_id
            )
        )
        version = ModelVersion(
            project_id=project_id,
            version=(latest or 0) + 1,
            model_name=model_name,
            params=model.params,
            n_labels=sum(class_counts.values()),
            class_counts=class_counts,
            metrics=metrics,
            training_seconds=round(seconds, 3),
            weights=weights,
        )
        session.add(version)
        session.flush()
        project.current_model_id = version.id
        return version.id, version.version
