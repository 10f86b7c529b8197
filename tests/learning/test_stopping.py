"""Stopping signal on synthetic learning curves with known shapes."""

from __future__ import annotations

import numpy as np
import pytest

from labelandlearn.learning.stopping import (
    SLOWING_DOWN,
    STABLE,
    STILL_IMPROVING,
    TOO_EARLY,
    curve_point,
    estimated_gain,
    fit_learning_curve,
    learning_curve,
    prediction_change,
    predictions_stable,
    stopping_signal,
)


def power_law_versions(
    a: float, b: float, c: float, sizes: list[int], noise: float = 0.0, folds: int = 5
) -> list[tuple[int, list[float]]]:
    rng = np.random.default_rng(0)
    versions = []
    for n in sizes:
        mean = a - b * n**-c
        versions.append((n, list(mean + rng.normal(0.0, noise, size=folds))))
    return versions


def test_curve_point_mean_std_band() -> None:
    point = curve_point(100, [0.6, 0.7, 0.8])
    assert point.mean == pytest.approx(0.7)
    assert point.std == pytest.approx(0.1)
    assert point.low == pytest.approx(0.7 - 1.96 * 0.1 / np.sqrt(3))
    assert point.high == pytest.approx(0.7 + 1.96 * 0.1 / np.sqrt(3))
    assert point.n_folds == 3


def test_curve_point_single_fold_no_spread() -> None:
    point = curve_point(50, [0.5])
    assert point.std == 0.0
    assert point.low == point.high == 0.5


def test_curve_point_rejects_empty() -> None:
    with pytest.raises(ValueError, match="no fold scores"):
        curve_point(10, [])


def test_learning_curve_keeps_latest_version() -> None:
    curve = learning_curve([(200, [0.7, 0.72]), (100, [0.6]), (200, [0.8])])
    assert [p.n_labels for p in curve] == [100, 200]
    assert curve[1].mean == pytest.approx(0.8)
    assert curve[1].n_folds == 1


def test_fit_recovers_power_law() -> None:
    sizes = [50, 100, 200, 400, 800, 1600]
    scores = [0.85 - 0.9 * n**-0.5 for n in sizes]
    fit = fit_learning_curve(sizes, scores)
    assert fit.kind == "power"
    assert fit.asymptote == pytest.approx(0.85, abs=0.01)
    assert float(fit.predict(3200)) == pytest.approx(0.85 - 0.9 * 3200**-0.5, abs=0.005)


def test_fit_uses_log_for_three_points() -> None:
    fit = fit_learning_curve([100, 200, 400], [0.5, 0.6, 0.7])
    assert fit.kind == "log"
    assert float(fit.predict(800)) == pytest.approx(0.8, abs=1e-6)


def test_fit_none_for_one_size() -> None:
    fit = fit_learning_curve([100, 100], [0.5, 0.6])
    assert fit.kind == "none"
    assert estimated_gain(fit, 100) is None


def test_gain_of_falling_curve_is_negative() -> None:
    fit = fit_learning_curve([100, 200, 400], [0.7, 0.6, 0.5])
    gain = estimated_gain(fit, 400)
    assert gain is not None
    assert gain < 0.0


def test_prediction_change_identical() -> None:
    change = prediction_change([0, 1, 2, 1], [0, 1, 2, 1])
    assert change.agreement == 1.0
    assert change.kappa == pytest.approx(1.0)
    assert change.n_items == 4


def test_prediction_change_constant_predictions() -> None:
    change = prediction_change(["a", "a"], ["a", "a"])
    assert change.kappa == 1.0


def test_prediction_change_partial() -> None:
    change = prediction_change([0, 0, 1, 1], [0, 1, 1, 1])
    assert change.agreement == pytest.approx(0.75)
    assert change.kappa == pytest.approx(0.5)


def test_prediction_change_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="different items"):
        prediction_change([0, 1], [0])


def test_predictions_stable_window() -> None:
    assert predictions_stable([0.5, 0.995, 0.992, 0.999])
    assert not predictions_stable([0.995, 0.98, 0.999])
    assert not predictions_stable([0.999, 0.999])


def test_signal_too_few_versions() -> None:
    signal = stopping_signal([(20, [0.5, 0.6]), (40, [0.6, 0.7])])
    assert signal.verdict == TOO_EARLY
    assert "a trend needs 3" in signal.message
    assert signal.estimated_gain_next_100 is None


def test_signal_steep_curve_still_improving() -> None:
    versions = power_law_versions(0.9, 2.0, 0.5, [20, 40, 60, 80, 100, 120], noise=0.005)
    signal = stopping_signal(versions, kappas=[0.7, 0.8, 0.85])
    assert signal.verdict == STILL_IMPROVING
    assert signal.estimated_gain_next_100 is not None
    assert signal.estimated_gain_next_100 >= 0.01
    assert signal.message.startswith("Still improving.")


def test_signal_flat_curve_stable() -> None:
    versions = power_law_versions(0.84, 2.0, 1.0, [1000, 1500, 2000, 2500, 3000], noise=0.001)
    signal = stopping_signal(versions, kappas=[0.995, 0.996, 0.998])
    assert signal.verdict == STABLE
    assert signal.estimated_gain_next_100 < 0.0025
    assert "kappa" in signal.message


def test_signal_flat_curve_changing_predictions_slowing() -> None:
    versions = power_law_versions(0.84, 2.0, 1.0, [1000, 1500, 2000, 2500, 3000], noise=0.001)
    signal = stopping_signal(versions, kappas=[0.9, 0.93, 0.95])
    assert signal.verdict == SLOWING_DOWN


def test_signal_moderate_gain_slowing() -> None:
    # A log curve gaining 0.05 per doubling adds about 0.005 over the next 100 at 1,000.
    sizes = [125, 250, 500, 1000]
    versions = [(n, [0.6 + 0.05 * np.log2(n / 125)] * 3) for n in sizes]
    signal = stopping_signal(versions)
    assert signal.verdict == SLOWING_DOWN
    assert 0.0025 <= signal.estimated_gain_next_100 < 0.01


def test_signal_to_dict_has_figures() -> None:
    versions = power_law_versions(0.9, 2.0, 0.5, [20, 40, 60, 80], noise=0.0)
    document = stopping_signal(versions).to_dict()
    assert document["verdict"] == STILL_IMPROVING
    assert len(document["curve"]) == 4
    assert {"n_labels", "mean", "std", "low", "high"} <= set(document["curve"][0])


def test_signal_few_changing_comparisons_not_stable() -> None:
    # Two comparisons with predictions still moving: the curve is flat but not stable.
    versions = [(100, [0.6, 0.62]), (150, [0.6, 0.62]), (200, [0.6, 0.62])]
    signal = stopping_signal(versions, kappas=[0.40, 0.45])
    assert signal.verdict == SLOWING_DOWN
    stable = stopping_signal(versions, kappas=[0.995, 0.999])
    assert stable.verdict == STABLE
    # No comparisons at all: a project without unlabelled items, judged by its curve.
    assert stopping_signal(versions).verdict == STABLE


def test_signal_falling_curve_shows_the_fall() -> None:
    versions = [(100, [0.55, 0.56]), (200, [0.52, 0.53]), (300, [0.48, 0.49]), (400, [0.45, 0.46])]
    signal = stopping_signal(versions, kappas=[0.8, 0.8, 0.8])
    assert signal.estimated_gain_next_100 is not None
    assert signal.estimated_gain_next_100 < 0
    assert signal.verdict == SLOWING_DOWN
    assert "falls by" in signal.message
