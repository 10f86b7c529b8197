"""Read-only views of a project's model versions, metrics and stopping signal for the
dashboard, the model page and the API."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelandlearn.errors import NotFoundError
from labelandlearn.learning.stopping import (
    MIN_TREND_POINTS,
    CurvePoint,
    fit_learning_curve,
    stopping_signal,
)
from labelandlearn.services.projects import get_project
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import ModelVersion, Project, iso_utc

logger = logging.getLogger(__name__)

MODEL_FILE_SUFFIX = ".lnlmodel"
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def metric_value(metrics: dict[str, Any] | None, name: str) -> float | None:
    """Return a scalar metric such as ``macro_f1`` from a ModelVersion.metrics dict, or None.

    A metric may be stored as a number or as ``{"mean": ..., "std": ...}``.
    """
    if not metrics:
        return None
    value = metrics.get(name)
    if isinstance(value, dict):
        value = value.get("mean")
    return float(value) if isinstance(value, int | float) else None


def metric_std(metrics: dict[str, Any] | None, name: str) -> float | None:
    """Return the standard deviation of a metric over the cross-validation folds, or None."""
    if not metrics:
        return None
    value = metrics.get(name)
    if isinstance(value, dict) and isinstance(value.get("std"), int | float):
        return float(value["std"])
    std = metrics.get(f"{name}_std")
    if isinstance(std, int | float):
        return float(std)
    folds = metrics.get("folds")
    if isinstance(folds, list) and len(folds) > 1:
        values = [fold.get(name) for fold in folds if isinstance(fold, dict)]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if len(numbers) > 1:
            mean = sum(numbers) / len(numbers)
            return (sum((v - mean) ** 2 for v in numbers) / len(numbers)) ** 0.5
    return None


def version_payload(version: ModelVersion, current_id: int | None) -> dict[str, Any]:
    metrics = version.metrics or {}
    return {
        "id": version.id,
        "version": version.version,
        "model_name": version.model_name,
        "n_labels": version.n_labels,
        "class_counts": version.class_counts or {},
        "accuracy": metric_value(metrics, "accuracy"),
        "accuracy_std": metric_std(metrics, "accuracy"),
        "macro_f1": metric_value(metrics, "macro_f1"),
        "macro_f1_std": metric_std(metrics, "macro_f1"),
        "training_seconds": version.training_seconds,
        "created_at": iso_utc(version.created_at) if version.created_at else None,
        "is_current": version.id == current_id,
        # "pending" marks a version trained on TF-IDF alone while embeddings were computed.
        "embeddings_status": (metrics.get("embeddings") or {}).get("status"),
        # The recipe that "auto" chose for this version, None for other models.
        "auto_choice": ((version.params or {}).get("auto") or {}).get("chosen"),
    }


def list_model_versions(db: Database, project_id: int) -> list[dict[str, Any]]:
    """Return every model version of the project, oldest first, without weights."""
    with db.session() as session:
        project = get_project(session, project_id)
        versions = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version)
        )
        return [version_payload(version, project.current_model_id) for version in versions]


def _current_version(session: Session, project: Project) -> ModelVersion | None:
    if project.current_model_id is None:
        return None
    return session.get(ModelVersion, project.current_model_id)


@dataclass
class ModelSummary:
    """The current model's version, its labels in metric order, and its metrics."""

    version: dict[str, Any]
    metrics: dict[str, Any]
    labels: list[str]


def current_model_summary(db: Database, project_id: int) -> ModelSummary | None:
    """Return the current model's version row and metrics, or None before the first model."""
    with db.session() as session:
        project = get_project(session, project_id)
        version = _current_version(session, project)
        if version is None:
            return None
        metrics = dict(version.metrics or {})
        labels = metrics.get("labels") or [label.name for label in project.labels]
        return ModelSummary(
            version=version_payload(version, project.current_model_id),
            metrics=metrics,
            labels=[str(label) for label in labels],
        )


def per_class_rows(summary: ModelSummary) -> list[dict[str, Any]]:
    """Return one row per label with precision, recall, F1 and support (None when absent)."""
    per_class = summary.metrics.get("per_class") or {}
    rows = []
    for label in summary.labels:
        values = per_class.get(label) or {}
        rows.append(
            {
                "label": label,
                "precision": metric_value(values, "precision"),
                "recall": metric_value(values, "recall"),
                "f1": metric_value(values, "f1"),
                "support": values.get("support"),
            }
        )
    return rows


def model_filename(project_name: str, version: int) -> str:
    """Return a download file name such as ``tweets-v3.lnlmodel``, safe in any file system."""
    stem = _UNSAFE_FILENAME_CHARS.sub("-", project_name).strip("-.") or "project"
    return f"{stem[:80]}-v{version}{MODEL_FILE_SUFFIX}"


def model_weights(
    db: Database, project_id: int, model_id: int | None = None
) -> tuple[bytes, str]:
    """Return a model file's bytes and download name: the current model, or the model version
    whose ``model_versions.id`` is ``model_id``, as in the API's ``/models/<model_id>``.

    Raises NotFoundError when the project has no such model.
    """
    with db.session() as session:
        project = get_project(session, project_id)
        if model_id is None:
            row = _current_version(session, project)
            if row is None:
                raise NotFoundError(
                    f"project {project_id} has no trained model yet; label some items and "
                    "press Retrain"
                )
        else:
            row = session.scalar(
                select(ModelVersion).where(
                    ModelVersion.project_id == project_id, ModelVersion.id == model_id
                )
            )
            if row is None:
                raise NotFoundError(f"model {model_id} of project {project_id} not found")
        weights = row.weights
        return weights, model_filename(project.name, row.version)


# --------------------------------------------------------------------------- stopping signal


def _version_rows(
    db: Database, project_id: int
) -> list[tuple[int, int, dict[str, Any], tuple[str, str, str]]]:
    """Return (version, n_labels, metrics, model setup) of every version, oldest first.

    The model setup is (recipe, featurizer, classifier) as the version was trained: a recipe
    with embeddings trains on TF-IDF alone until every item has its vector.
    """
    with db.session() as session:
        get_project(session, project_id)
        rows = session.execute(
            select(
                ModelVersion.version,
                ModelVersion.n_labels,
                ModelVersion.metrics,
                ModelVersion.model_name,
                ModelVersion.params,
            )
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version)
        ).all()
        return [
            (
                version,
                n_labels,
                dict(metrics or {}),
                (
                    str(model_name),
                    str((params or {}).get("featurizer", "")),
                    str((params or {}).get("classifier", "")),
                ),
            )
            for version, n_labels, metrics, model_name, params in rows
        ]


def _fold_scores(metrics: dict[str, Any]) -> list[float]:
    folds = metrics.get("fold_macro_f1")
    if isinstance(folds, list) and folds:
        return [float(v) for v in folds if isinstance(v, int | float)]
    value = metric_value(metrics, "macro_f1")
    return [value] if value is not None else []


def stopping_report(db: Database, project_id: int) -> dict[str, Any]:
    """Return the stopping verdict with the figures behind it, for the dashboard and the API.

    Keys: the fields of ``StoppingSignal`` (verdict, message, n_labels, latest_score,
    latest_score_std, estimated_gain_next_100, curve_kind, recent_kappas, curve), plus
    ``prediction_changes`` (one row per version compared with its predecessor), ``fitted``
    (the fitted learning curve from the first point to 100 labels past the last) and
    ``n_versions``.
    """
    rows = _version_rows(db, project_id)
    # The learning curve follows the current model setup only: a jump between a TF-IDF model
    # and one with embeddings, or between two recipes, is not a gain from more labels.
    setup = rows[-1][3] if rows else None
    versions = [
        (n_labels, _fold_scores(m)) for _, n_labels, m, s in rows if s == setup and _fold_scores(m)
    ]
    changes = [
        {"version": version, "n_labels": n_labels, **metrics["prediction_change"]}
        for version, n_labels, metrics, _ in rows
        if isinstance(metrics.get("prediction_change"), dict)
    ]
    signal = stopping_signal(versions, [float(change["kappa"]) for change in changes])
    report = signal.to_dict()
    report["prediction_changes"] = changes
    report["n_versions"] = len(rows)
    report["fitted"] = _fitted_curve(signal.curve)
    return report


def _fitted_curve(curve: list[CurvePoint]) -> list[dict[str, float]]:
    # As for the estimated gain, a curve through fewer than 3 points shows no trend.
    if len(curve) < MIN_TREND_POINTS:
        return []
    fit = fit_learning_curve([p.n_labels for p in curve], [p.mean for p in curve])
    if fit.kind == "none":
        return []
    first, last = curve[0].n_labels, curve[-1].n_labels + 100
    n_values = sorted({max(1, int(round(n))) for n in np.linspace(first, last, 40)})
    predicted = fit.predict(np.asarray(n_values, dtype=np.float64))
    return [{"n_labels": n, "score": float(s)} for n, s in zip(n_values, predicted, strict=True)]


# --------------------------------------------------------------------------- model page


def model_detail(db: Database, project_id: int, model_id: int) -> dict[str, Any]:
    """Return one model version's settings, metrics, per-class table, confusion matrix,
    calibration and, for a neural network, its architecture and training curve.

    Raises NotFoundError when ``model_id`` is not a model version of the project.
    """
    with db.session() as session:
        project = get_project(session, project_id)
        version = session.get(ModelVersion, model_id)
        if version is None or version.project_id != project_id:
            raise NotFoundError(f"model {model_id} of project {project_id} not found")
        metrics = dict(version.metrics or {})
        labels = [
            str(label) for label in metrics.get("labels") or [lb.name for lb in project.labels]
        ]
        payload = version_payload(version, project.current_model_id)
        params = dict(version.params or {})
        project_name = project.name
        class_counts = dict(version.class_counts or {})
    summary = ModelSummary(version=payload, metrics=metrics, labels=labels)
    scalar_names = ("accuracy", "macro_f1", "fold_macro_f1_mean", "fold_macro_f1_std", "ece")
    return {
        "project": {"id": project_id, "name": project_name},
        "model": payload,
        "settings": params,
        "labels": labels,
        "metrics": {name: metrics.get(name) for name in scalar_names if name in metrics},
        "n_splits": metrics.get("n_splits"),
        "fold_macro_f1": metrics.get("fold_macro_f1") or [],
        "per_class": per_class_rows(summary),
        "confusion_matrix": metrics.get("confusion_matrix") or [],
        "calibration": metrics.get("calibration"),
        "network": metrics.get("network"),
        "prediction_change": metrics.get("prediction_change"),
        "embeddings": metrics.get("embeddings"),
        "auto": params.get("auto"),
        "baseline": majority_baseline(class_counts, labels),
    }


def majority_baseline(
    class_counts: Mapping[str, int], labels: Sequence[str]
) -> dict[str, Any] | None:
    """Return the scores of always predicting the most common label, or None without labels.

    Its macro-F1 averages over all ``labels``, as the model's does: the common label scores
    2p / (1 + p) for its share p, and every other label 0.
    """
    total = sum(class_counts.values())
    if total == 0 or not labels:
        return None
    label, count = max(class_counts.items(), key=lambda item: item[1])
    share = count / total
    return {
        "label": label,
        "accuracy": share,
        "macro_f1": 2 * share / (1 + share) / len(labels),
    }
