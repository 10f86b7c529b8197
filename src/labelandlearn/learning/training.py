"""Full training of a project's model from the database, stored as a new model version."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from labelandlearn.errors import NotFoundError
from labelandlearn.learning.base import ModelRecipe, ProgressCallback, TextModel, get_recipe
from labelandlearn.learning.evaluation import (
    check_class_counts,
    cross_validate,
    cross_validate_features,
)
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Label, ModelVersion, Project

logger = logging.getLogger(__name__)

# Cross-validation needs 2 examples of a class to put one on each side of a split.
MIN_LABELS_PER_CLASS = 2


@dataclass
class TrainingData:
    """The labelled items (texts, label names) and the texts of all other items."""

    project_name: str
    model_name: str
    labels: list[str]
    texts: list[str]
    label_names: list[str]
    unlabelled_texts: list[str]


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
        sa.select(Item.text, Item.label_id).where(Item.project_id == project_id).order_by(Item.id)
    ).all()
    texts, label_names, unlabelled = [], [], []
    for text, label_id in rows:
        if label_id is not None and label_id in name_of:
            texts.append(text)
            label_names.append(name_of[label_id])
        else:
            unlabelled.append(text)
    return TrainingData(
        project_name=project.name,
        model_name=project.model_name,
        labels=[name for _, name in labels],
        texts=texts,
        label_names=label_names,
        unlabelled_texts=unlabelled,
    )


def train_project(db: Database, project_id: int, progress: ProgressCallback | None = None) -> int:
    """Train the project's model on its labelled items, store it as the current model version.

    Raises NotEnoughLabelsError, naming the classes short of examples, before anything is
    stored, so the previous model stays current. Returns the new ``model_versions.id``.
    """
    report = progress or (lambda fraction, message: None)
    with db.session() as session:
        data = load_training_data(session, project_id)
    class_counts = check_class_counts(data.labels, data.label_names, MIN_LABELS_PER_CLASS)
    recipe = get_recipe(data.model_name)

    started = time.perf_counter()
    model, metrics = _fit_and_evaluate(recipe, data, report)
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
    return version_id


def _fit_and_evaluate(
    recipe: ModelRecipe, data: TrainingData, report: ProgressCallback
) -> tuple[TextModel, dict[str, Any]]:
    """Fit the model on all labels and cross-validate it; return (model, metrics)."""
    if type(recipe).fit_model is not ModelRecipe.fit_model:
        # A recipe that picks its components from the data is cross-validated as a whole.
        report(0.05, "cross-validating")
        metrics = cross_validate(
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
        return model, metrics
    # The featurizer learns no labels, so one fit on all texts serves the folds and the model.
    report(0.05, "computing features")
    model = recipe.build(data.labels)
    model.featurizer.fit(data.texts + data.unlabelled_texts)
    features = model.featurizer.transform(data.texts)
    report(0.3, "cross-validating")
    metrics = cross_validate_features(
        model,
        features,
        data.label_names,
        progress=lambda fraction, message: report(0.3 + 0.5 * fraction, message),
    )
    report(0.8, "training on all labels")
    model.classifier.fit(features, model.encode_labels(data.label_names))
    return model, metrics


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
