"""Calibration of predicted probabilities: reliability curves, ECE and post-hoc scaling.

The reliability curve bins predictions by top-label confidence and compares each bin's mean
confidence with its accuracy; the expected calibration error (ECE) is the count-weighted mean
gap. Both come from cross-validation out-of-fold probabilities, never from the training data.

Two post-hoc scalers are tried: temperature scaling (one temperature on the log
probabilities, any number of classes) and Platt scaling (a logistic curve on the log-odds,
two classes only). ``choose_calibration`` keeps one only when it lowers the ECE measured by
2-fold cross-fitting on the out-of-fold probabilities, and ``CalibratedClassifier`` applies the
chosen scaler to any classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Self

import numpy as np

from labelandlearn.learning.base import (
    ArrayState,
    Classifier,
    Features,
    TextModel,
    get_classifier_class,
    register_classifier,
)

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["none", "temperature", "platt"]
EPSILON = 1e-12
# A scaler must lower the cross-fitted ECE by at least this much to be kept; smaller changes
# are within the noise of a few hundred predictions.
MIN_ECE_IMPROVEMENT = 0.002


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin mean confidence, accuracy and count, and the expected calibration error."""

    bin_edges: list[float]
    confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]
    ece: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reliability_curve(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> ReliabilityCurve:
    """Bin the top-label confidence of ``proba`` into ``n_bins`` equal-width bins.

    ``y`` contains column indices of ``proba``. Empty bins have None confidence and accuracy.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    if proba.ndim != 2 or proba.shape[0] != y.shape[0]:
        raise ValueError(f"proba shape {proba.shape} does not match {y.shape[0]} labels")
    if proba.shape[0] == 0:
        raise ValueError("no predictions to build a reliability curve from")

    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # The last bin is closed on the right so a confidence of exactly 1.0 is counted.
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)

    bin_confidence: list[float | None] = []
    bin_accuracy: list[float | None] = []
    counts: list[int] = []
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        count = int(mask.sum())
        counts.append(count)
        if count == 0:
            bin_confidence.append(None)
            bin_accuracy.append(None)
            continue
        mean_confidence = float(confidence[mask].mean())
        accuracy = float(correct[mask].mean())
        bin_confidence.append(mean_confidence)
        bin_accuracy.append(accuracy)
        ece += count / proba.shape[0] * abs(mean_confidence - accuracy)
    return ReliabilityCurve(edges.tolist(), bin_confidence, bin_accuracy, counts, float(ece))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Return the count-weighted mean |confidence - accuracy| over equal-width bins."""
    return reliability_curve(proba, y, n_bins).ece


# --------------------------------------------------------------------------- scalers


@dataclass(frozen=True)
class Scaler:
    """A fitted post-hoc scaler: ``temperature`` divides log probabilities, or Platt's a and b."""

    method: CalibrationMethod
    temperature: float = 1.0
    platt_a: float = 1.0
    platt_b: float = 0.0

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities with the same shape as ``proba``."""
        proba = np.asarray(proba, dtype=np.float64)
        if self.method == "temperature":
            return _softmax(np.log(np.clip(proba, EPSILON, 1.0)) / self.temperature)
        if self.method == "platt":
            positive = _sigmoid(self.platt_a * _log_odds(proba[:, 1]) + self.platt_b)
            return np.column_stack([1.0 - positive, positive])
        return proba


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> Scaler:
    """Return the temperature in [0.05, 20] that minimises the log loss of ``proba``."""
    from scipy.optimize import minimize_scalar

    log_proba = np.log(np.clip(np.asarray(proba, dtype=np.float64), EPSILON, 1.0))
    rows = np.arange(log_proba.shape[0])

    def negative_log_likelihood(log_temperature: float) -> float:
        scaled = log_proba / np.exp(log_temperature)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(-(scaled[rows, y] - log_norm).mean())

    result = minimize_scalar(
        negative_log_likelihood, bounds=(np.log(0.05), np.log(20.0)), method="bounded"
    )
    return Scaler(method="temperature", temperature=float(np.exp(result.x)))


def fit_platt(proba: np.ndarray, y: np.ndarray) -> Scaler:
    """Return Platt's sigmoid fitted on the log-odds of class 1 (two classes only)."""
    from sklearn.linear_model import LogisticRegression

    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] != 2:
        raise ValueError(f"Platt scaling needs 2 classes, got {proba.shape[1]}")
    log_odds = _log_odds(proba[:, 1]).reshape(-1, 1)
    regression = LogisticRegression(C=1e4).fit(log_odds, (np.asarray(y) == 1).astype(int))
    return Scaler(
        method="platt",
        platt_a=float(regression.coef_[0, 0]),
        platt_b=float(regression.intercept_[0]),
    )


@dataclass(frozen=True)
class CalibrationReport:
    """The chosen scaler with the reliability curves before and after it."""

    scaler: Scaler
    ece_before: float
    ece_after: float
    candidates: dict[str, float]
    curve_before: ReliabilityCurve
    curve_after: ReliabilityCurve

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_calibration(
    oof_proba: np.ndarray, y: np.ndarray, *, n_bins: int = 10, random_state: int = 0
) -> CalibrationReport:
    """Pick temperature, Platt or no scaling by 2-fold cross-fitted ECE on out-of-fold data.

    Each scaler is fitted on one half and scored on the other, then the halves swap; the
    winner must beat no scaling by ``MIN_ECE_IMPROVEMENT`` and is refitted on all rows.
    """
    proba = np.asarray(oof_proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    baseline = expected_calibration_error(proba, y, n_bins)
    fitters = {"temperature": fit_temperature}
    if proba.shape[1] == 2:
        fitters["platt"] = fit_platt

    candidates = {"none": baseline}
    # Each method's probabilities, each half scaled by a scaler fitted on the other half.
    cross_fitted = {"none": proba}
    halves = _two_halves(y, random_state)
    for method, fitter in fitters.items():
        if halves is None:
            break
        calibrated = np.empty_like(proba)
        for fit_rows, score_rows in (halves, halves[::-1]):
            calibrated[score_rows] = fitter(proba[fit_rows], y[fit_rows]).apply(proba[score_rows])
        candidates[method] = expected_calibration_error(calibrated, y, n_bins)
        cross_fitted[method] = calibrated

    best = min(candidates, key=lambda name: candidates[name])
    scaler = Scaler(method="none")
    if best != "none" and candidates[best] <= baseline - MIN_ECE_IMPROVEMENT:
        scaler = fitters[best](proba, y)
    # The curve after scaling shows the cross-fitted probabilities that ``ece_after`` scores,
    # so the plot and the figure agree. The final scaler is fitted on all of them.
    after = cross_fitted[scaler.method]
    logger.info(
        "calibration: %s chosen, ECE %.4f before, cross-fitted candidates %s",
        scaler.method,
        baseline,
        candidates,
    )
    return CalibrationReport(
        scaler=scaler,
        ece_before=baseline,
        ece_after=candidates[scaler.method],
        candidates=candidates,
        curve_before=reliability_curve(proba, y, n_bins),
        curve_after=reliability_curve(after, y, n_bins),
    )


def _two_halves(y: np.ndarray, random_state: int) -> tuple[np.ndarray, np.ndarray] | None:
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    if y.size < 20 or counts[counts > 0].min() < 2:
        return None
    splitter = StratifiedKFold(n_splits=2, shuffle=True, random_state=random_state)
    first, second = next(iter(splitter.split(np.zeros(y.size), y)))
    return first, second


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPSILON, 1.0 - EPSILON)
    return np.asarray(np.log(p) - np.log1p(-p))


# --------------------------------------------------------------------------- classifier


@register_classifier("calibrated")
class CalibratedClassifier(Classifier):
    """Wraps a fitted classifier and applies a post-hoc scaler to its probabilities.

    ``fit`` and ``partial_fit`` train the wrapped classifier and keep the scaler, which was
    measured on out-of-fold probabilities of the same recipe.
    """

    def __init__(
        self,
        base_name: str = "linear",
        base_params: Mapping[str, Any] | None = None,
        scaler: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_name = base_name
        self.base_params = base_params
        self.scaler = scaler

    @classmethod
    def wrap(cls, classifier: Classifier, scaler: Scaler) -> CalibratedClassifier:
        """Return a calibrated classifier around an already fitted ``classifier``."""
        wrapped = cls(classifier.name, classifier.get_params(), asdict(scaler))
        wrapped.base_ = classifier
        if classifier.is_fitted:
            wrapped.classes_ = classifier.classes_
        return wrapped

    def _scaler(self) -> Scaler:
        return Scaler(**dict(self.scaler or {"method": "none"}))

    def _base(self) -> Classifier:
        if not hasattr(self, "base_"):
            self.base_ = get_classifier_class(self.base_name)(**dict(self.base_params or {}))
        return self.base_

    def fit(self, X: Features, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Self:
        self._base().fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.base_.classes_
        return self

    def partial_fit(self, X: Features, y: np.ndarray, classes: np.ndarray | None = None) -> Self:
        self._base().partial_fit(X, y, classes=classes)
        self.classes_ = self.base_.classes_
        return self

    def predict_proba(self, X: Features) -> np.ndarray:
        return self._scaled(self._base().predict_proba(X))

    def predict_proba_blocks(self, blocks: Sequence[Features]) -> np.ndarray:
        return self._scaled(self._base().predict_proba_blocks(blocks))

    def _scaled(self, proba: np.ndarray) -> np.ndarray:
        scaler = self._scaler()
        if scaler.method == "platt" and proba.shape[1] != 2:
            return proba
        return scaler.apply(proba)

    def get_state(self) -> tuple[dict[str, Any], ArrayState]:
        base_config, base_arrays = self._base().get_state()
        config = {
            "base_name": self.base_name,
            "base_config": base_config,
            "scaler": dict(self.scaler or {"method": "none"}),
        }
        return config, {f"base.{k}": v for k, v in base_arrays.items()}

    @classmethod
    def from_state(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Self:
        base_cls = get_classifier_class(config["base_name"])
        base_arrays = {k[len("base.") :]: v for k, v in arrays.items() if k.startswith("base.")}
        base = base_cls.from_state(config["base_config"], base_arrays)
        wrapped = cls(config["base_name"], base.get_params(), config["scaler"])
        wrapped.base_ = base
        if base.is_fitted:
            wrapped.classes_ = base.classes_
        return wrapped


def calibrate_model(
    model: TextModel, oof_proba: np.ndarray, y: np.ndarray
) -> tuple[TextModel, CalibrationReport]:
    """Return ``model`` with a calibrated classifier when scaling lowers ECE, and the report.

    ``oof_proba`` are the recipe's cross-validation out-of-fold probabilities, columns in
    ``model.labels`` order, and ``y`` the label indices of the same rows.
    """
    report = choose_calibration(oof_proba, y)
    if report.scaler.method == "none":
        return model, report
    calibrated = CalibratedClassifier.wrap(model.classifier, report.scaler)
    params = dict(model.params)
    params["calibration"] = asdict(report.scaler)
    return TextModel(model.featurizer, calibrated, model.labels, params), report
