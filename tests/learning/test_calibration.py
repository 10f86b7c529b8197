"""Reliability curves, ECE and the post-hoc scalers on probabilities with known calibration."""

from __future__ import annotations

import numpy as np
import pytest

from labelandlearn.learning.calibration import (
    CalibratedClassifier,
    Scaler,
    choose_calibration,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)


def calibrated_binary(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities drawn uniformly with labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, size=n)
    y = (rng.uniform(size=n) < p).astype(np.int64)
    return np.column_stack([1 - p, p]), y


def overconfident(proba: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(proba, 1e-12, 1)) / temperature
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_reliability_curve_bins() -> None:
    proba = np.array([[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.45, 0.55]])
    y = np.array([0, 1, 1, 0])
    curve = reliability_curve(proba, y, n_bins=10)
    assert curve.count[9] == 2
    assert curve.accuracy[9] == pytest.approx(0.5)
    assert curve.confidence[9] == pytest.approx(0.925)
    assert curve.count[5] == 2
    assert curve.accuracy[5] == pytest.approx(0.5)
    assert curve.confidence[0] is None
    expected = 0.5 * abs(0.925 - 0.5) + 0.5 * abs(0.575 - 0.5)
    assert curve.ece == pytest.approx(expected)


def test_confidence_one_counts_in_last_bin() -> None:
    curve = reliability_curve(np.array([[1.0, 0.0]]), np.array([0]), n_bins=5)
    assert curve.count == [0, 0, 0, 0, 1]
    assert curve.ece == pytest.approx(0.0)


def test_reliability_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="does not match"):
        reliability_curve(np.ones((3, 2)) / 2, np.array([0, 1]))


def test_calibrated_probabilities_low_ece() -> None:
    proba, y = calibrated_binary(20_000)
    assert expected_calibration_error(proba, y) < 0.02


def test_temperature_recovers_overconfidence() -> None:
    proba, y = calibrated_binary(20_000)
    sharp = overconfident(proba, temperature=0.5)
    scaler = fit_temperature(sharp, y)
    assert scaler.temperature == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(scaler.apply(sharp), y) < 0.02


def test_choose_calibration_fixes_overconfident() -> None:
    proba, y = calibrated_binary(5_000, seed=1)
    sharp = overconfident(proba, temperature=0.4)
    report = choose_calibration(sharp, y)
    assert report.scaler.method in {"temperature", "platt"}
    assert report.ece_after < report.ece_before - 0.05
    assert report.curve_after.ece < report.curve_before.ece
    # The plotted curve and the reported error score the same cross-fitted probabilities.
    assert report.curve_after.ece == pytest.approx(report.ece_after)


def test_choose_calibration_keeps_calibrated() -> None:
    proba, y = calibrated_binary(5_000, seed=2)
    report = choose_calibration(proba, y)
    assert report.scaler.method == "none"
    assert report.ece_after == report.ece_before


def test_scaler_none_is_identity() -> None:
    proba = np.array([[0.2, 0.8]])
    assert np.array_equal(Scaler(method="none").apply(proba), proba)


def test_calibrated_classifier_state_round_trip() -> None:
    from sklearn.linear_model import LogisticRegression

    from labelandlearn.learning.base import Classifier, register_classifier

    @register_classifier("test-logistic")
    class Logistic(Classifier):
        def __init__(self, C: float = 1.0) -> None:
            self.C = C

        def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def]
            self.model_ = LogisticRegression(C=self.C).fit(X, y)
            self.classes_ = self.model_.classes_
            return self

        def partial_fit(self, X, y, classes=None):  # type: ignore[no-untyped-def]
            return self.fit(X, y)

        def predict_proba(self, X):  # type: ignore[no-untyped-def]
            return self.model_.predict_proba(X)

        def get_state(self):  # type: ignore[no-untyped-def]
            return {"C": self.C}, {"coef": self.model_.coef_, "intercept": self.model_.intercept_}

        @classmethod
        def from_state(cls, config, arrays):  # type: ignore[no-untyped-def]
            restored = cls(config["C"])
            restored.model_ = LogisticRegression(C=config["C"])
            restored.model_.coef_ = arrays["coef"]
            restored.model_.intercept_ = arrays["intercept"]
            restored.model_.classes_ = np.array([0, 1])
            restored.classes_ = restored.model_.classes_
            return restored

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    base = Logistic().fit(X, y)
    wrapped = CalibratedClassifier.wrap(base, Scaler(method="temperature", temperature=2.0))
    config, arrays = wrapped.get_state()
    restored = CalibratedClassifier.from_state(config, arrays)

    softened = restored.predict_proba(X)
    assert np.allclose(softened, wrapped.predict_proba(X))
    assert softened.max() < base.predict_proba(X).max()
    assert np.array_equal(restored.classes_, np.array([0, 1]))
