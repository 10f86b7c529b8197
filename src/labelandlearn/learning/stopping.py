"""Stopping signal: whether more labels are still improving the model.

Three figures feed the verdict, each computed by a pure function over numbers so the
dashboard, the CLI and the tests share one definition:

* the learning curve: macro-F1 of each model version from its cross-validation folds, with the
  spread between folds as its uncertainty;
* stabilising predictions: Cohen's kappa between the predictions of two successive model
  versions on the same unlabelled pool (Bloodgood and Vijay-Shanker, 2009, stop once kappa
  stays at or above 0.99 for three comparisons in a row);
* the estimated gain from the next 100 labels, read off an inverse power law
  ``score = a - b * n ** -c`` fitted to the learning curve (a logarithmic curve when fewer
  than four points or the power law does not converge).

``stopping_signal`` joins them into "still improving", "slowing down" or "stable" with a
sentence and the figures behind it, or "too early to tell" before models at three different
label counts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Verdict = Literal["still improving", "slowing down", "stable", "too early to tell"]
STILL_IMPROVING: Verdict = "still improving"
SLOWING_DOWN: Verdict = "slowing down"
STABLE: Verdict = "stable"
TOO_EARLY: Verdict = "too early to tell"

# Gain in macro-F1 expected from the next 100 labels above which the model is still improving,
# and below which the curve counts as flat. One point of macro-F1 per 100 labels is worth the
# labelling time; a quarter point is within the spread between folds on a few thousand labels.
IMPROVING_GAIN = 0.01
FLAT_GAIN = 0.0025
# Kappa between successive versions' predictions that counts as stable, and how many
# comparisons in a row must reach it (the stabilising-predictions criterion).
STABLE_KAPPA = 0.99
STABLE_WINDOW = 3
# Label counts on the learning curve below which no trend is read and no curve is fitted.
MIN_TREND_POINTS = 3
# Width of the uncertainty band: about 95% of a normal distribution.
Z_95 = 1.96


@dataclass(frozen=True)
class CurvePoint:
    """Cross-validated score of one model version: mean and spread of its fold scores."""

    n_labels: int
    mean: float
    std: float
    low: float
    high: float
    n_folds: int


@dataclass(frozen=True)
class CurveFit:
    """A curve fitted to score against number of labels; ``predict`` evaluates it."""

    kind: Literal["power", "log", "none"]
    coefficients: tuple[float, ...]
    asymptote: float | None

    def predict(self, n_labels: float | np.ndarray) -> np.ndarray:
        n = np.asarray(n_labels, dtype=np.float64)
        if self.kind == "power":
            a, b, c = self.coefficients
            return np.asarray(a - b * np.power(n, -c))
        if self.kind == "log":
            a, b = self.coefficients
            return np.asarray(a + b * np.log(n))
        return np.full(n.shape, np.nan)


@dataclass(frozen=True)
class PredictionChange:
    """How much the predictions on the unlabelled pool changed between two model versions."""

    agreement: float
    kappa: float
    n_items: int


@dataclass
class StoppingSignal:
    """The verdict, a sentence that explains it, and the figures behind it."""

    verdict: Verdict
    message: str
    n_labels: int | None
    latest_score: float | None
    latest_score_std: float | None
    estimated_gain_next_100: float | None
    curve_kind: str
    recent_kappas: list[float] = field(default_factory=list)
    curve: list[CurvePoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable copy for the API and the dashboard."""
        return asdict(self)


# --------------------------------------------------------------------------- learning curve


def curve_point(n_labels: int, fold_scores: Sequence[float]) -> CurvePoint:
    """Summarise the fold scores of one model version as mean, standard deviation and a band.

    The band is mean ± 1.96 standard errors, clipped to [0, 1]; one fold gives no spread.
    """
    scores = np.asarray(fold_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError(f"model version at {n_labels} labels has no fold scores")
    mean = float(scores.mean())
    std = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
    half_width = Z_95 * std / math.sqrt(scores.size)
    return CurvePoint(
        n_labels=int(n_labels),
        mean=mean,
        std=std,
        low=max(0.0, mean - half_width),
        high=min(1.0, mean + half_width),
        n_folds=int(scores.size),
    )


def learning_curve(versions: Sequence[tuple[int, Sequence[float]]]) -> list[CurvePoint]:
    """Return one point per number of labels, sorted by it.

    ``versions`` contains (n_labels, fold scores) pairs, oldest version first. Of several
    versions at the same number of labels (a retrain without new answers, for example after
    the embeddings arrived or the model changed), the latest one counts: it is the model the
    project uses, and folds of different models would mix in one point.
    """
    latest: dict[int, list[float]] = {}
    for n_labels, fold_scores in versions:
        latest[int(n_labels)] = [float(s) for s in fold_scores]
    return [curve_point(n, scores) for n, scores in sorted(latest.items()) if scores]


def fit_learning_curve(n_labels: Sequence[float], scores: Sequence[float]) -> CurveFit:
    """Fit ``a - b * n ** -c`` (four points or more), else ``a + b * ln n`` (two or three).

    A power law whose fit fails or leaves a worse residual than the logarithm falls back to
    the logarithm; fewer than two distinct numbers of labels give ``kind="none"``.
    """
    n = np.asarray(n_labels, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    keep = (n > 0) & np.isfinite(y)
    n, y = n[keep], y[keep]
    if np.unique(n).size < 2:
        return CurveFit(kind="none", coefficients=(), asymptote=None)

    log_fit = _fit_log(n, y)
    if np.unique(n).size < 4:
        return log_fit
    power_fit = _fit_power(n, y)
    if power_fit is None:
        return log_fit
    if _residual(power_fit, n, y) > _residual(log_fit, n, y) * 1.05:
        return log_fit
    return power_fit


def _fit_log(n: np.ndarray, y: np.ndarray) -> CurveFit:
    slope, intercept = np.polyfit(np.log(n), y, deg=1)
    return CurveFit(kind="log", coefficients=(float(intercept), float(slope)), asymptote=None)


def _fit_power(n: np.ndarray, y: np.ndarray) -> CurveFit | None:
    from scipy.optimize import curve_fit

    def power_law(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * np.power(x, -c)

    start = (min(1.0, float(y.max()) + 0.02), 1.0, 0.5)
    try:
        coefficients, _ = curve_fit(
            power_law,
            n,
            y,
            p0=start,
            bounds=([0.0, 0.0, 0.01], [1.0, 100.0, 3.0]),
            maxfev=5000,
        )
    except (RuntimeError, ValueError) as exc:
        logger.debug("power-law fit of %d curve points failed: %s", n.size, exc)
        return None
    a, b, c = (float(v) for v in coefficients)
    return CurveFit(kind="power", coefficients=(a, b, c), asymptote=a)


def _residual(fit: CurveFit, n: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((fit.predict(n) - y) ** 2))


def estimated_gain(fit: CurveFit, n_labels: int, extra_labels: int = 100) -> float | None:
    """Return the fitted score at ``n_labels + extra_labels`` minus the score at ``n_labels``.

    A falling fitted curve gives a negative gain, kept as it is because it shows that the
    recent versions scored lower, which a clipped 0 would hide. No fit gives None.
    """
    if fit.kind == "none" or n_labels <= 0:
        return None
    now, later = fit.predict(np.array([n_labels, n_labels + extra_labels], dtype=np.float64))
    return float(later - now)


# --------------------------------------------------------------------------- prediction change


def prediction_change(previous: Sequence[Any], current: Sequence[Any]) -> PredictionChange:
    """Compare two versions' predicted labels on the same items: raw agreement and kappa.

    Identical constant predictions give kappa 1.0 (scikit-learn returns NaN there, because the
    expected agreement is 1).
    """
    from sklearn.metrics import cohen_kappa_score

    before = np.asarray(previous)
    after = np.asarray(current)
    if before.shape != after.shape:
        raise ValueError(
            f"predictions cover different items: {before.shape[0]} before, {after.shape[0]} now"
        )
    if before.size == 0:
        raise ValueError("no unlabelled items to compare predictions on")
    agreement = float(np.mean(before == after))
    if np.unique(np.concatenate([before, after])).size == 1:
        kappa = 1.0
    else:
        kappa = float(cohen_kappa_score(before, after))
    return PredictionChange(agreement=agreement, kappa=kappa, n_items=int(before.size))


def predictions_stable(
    kappas: Sequence[float], threshold: float = STABLE_KAPPA, window: int = STABLE_WINDOW
) -> bool:
    """Return whether the last ``window`` kappas all reach ``threshold``."""
    recent = list(kappas)[-window:]
    return len(recent) == window and all(k >= threshold for k in recent)


# --------------------------------------------------------------------------- verdict


def stopping_signal(
    versions: Sequence[tuple[int, Sequence[float]]],
    kappas: Sequence[float] = (),
    *,
    extra_labels: int = 100,
) -> StoppingSignal:
    """Judge from the learning curve and the prediction changes whether to keep labelling.

    ``versions`` contains (n_labels, cross-validation fold scores) per model version, ``kappas``
    the kappa between each pair of successive versions on the unlabelled pool, oldest first.
    Rules: an estimated gain of at least 0.01 macro-F1 from the next ``extra_labels`` labels is
    "still improving". A gain under 0.0025 is "stable" when the last three kappas reach 0.99,
    or when fewer comparisons exist and all of them reach it (none at all: a project without
    unlabelled items). Anything else is "slowing down". With fewer than three versions at
    different label counts the verdict is "too early to tell", because no trend can be read.
    """
    curve = learning_curve(versions)
    recent_kappas = [float(k) for k in list(kappas)[-STABLE_WINDOW:]]
    if len(curve) < MIN_TREND_POINTS:
        return StoppingSignal(
            verdict=TOO_EARLY,
            message=_early_message(len(curve)),
            n_labels=curve[-1].n_labels if curve else None,
            latest_score=curve[-1].mean if curve else None,
            latest_score_std=curve[-1].std if curve else None,
            estimated_gain_next_100=None,
            curve_kind="none",
            recent_kappas=recent_kappas,
            curve=curve,
        )

    latest = curve[-1]
    fit = fit_learning_curve([p.n_labels for p in curve], [p.mean for p in curve])
    gain = estimated_gain(fit, latest.n_labels, extra_labels) or 0.0
    all_kappas = [float(k) for k in kappas]
    stable_predictions = predictions_stable(all_kappas) or (
        len(all_kappas) < STABLE_WINDOW and all(k >= STABLE_KAPPA for k in all_kappas)
    )
    verdict = _verdict(gain, stable_predictions)
    return StoppingSignal(
        verdict=verdict,
        message=_message(verdict, gain, latest, recent_kappas, extra_labels),
        n_labels=latest.n_labels,
        latest_score=latest.mean,
        latest_score_std=latest.std,
        estimated_gain_next_100=gain,
        curve_kind=fit.kind,
        recent_kappas=recent_kappas,
        curve=curve,
    )


def _early_message(points: int) -> str:
    if points == 0:
        return "No model with cross-validated scores yet; label items and train one."
    counts = "one label count" if points == 1 else f"{points} different label counts"
    return (
        f"Models were trained at {counts} so far, and a trend needs {MIN_TREND_POINTS}. Keep "
        "labelling: the next retrain at a new label count adds a point."
    )


def _verdict(gain: float, stable_predictions: bool) -> Verdict:
    if gain >= IMPROVING_GAIN:
        return STILL_IMPROVING
    if gain < FLAT_GAIN and stable_predictions:
        return STABLE
    return SLOWING_DOWN


def _message(
    verdict: Verdict,
    gain: float,
    latest: CurvePoint,
    recent_kappas: Sequence[float],
    extra_labels: int,
) -> str:
    score = f"Macro-F1 is {latest.mean:.3f} ± {latest.std:.3f} at {latest.n_labels} labels"
    if gain < -0.0005:
        outlook = (
            f"the fitted curve falls by {-gain * 100:.1f} points over the next {extra_labels} "
            "labels, because the latest versions scored lower than earlier ones"
        )
    else:
        points = max(gain, 0.0) * 100
        outlook = f"the next {extra_labels} labels should add about {points:.1f} points"
    kappa = (
        f"; predictions on unlabelled items changed little (kappa {min(recent_kappas):.3f})"
        if recent_kappas and min(recent_kappas) >= STABLE_KAPPA
        else ""
    )
    if verdict == STILL_IMPROVING:
        return f"Still improving. {score}, and {outlook}."
    if verdict == STABLE:
        return f"Stable. {score}; {outlook}{kappa}. More labels are unlikely to help much."
    return f"Slowing down. {score}; {outlook}{kappa}."
