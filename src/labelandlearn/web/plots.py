"""Dashboard plots as SVG, drawn with matplotlib's SVG canvas (no display needed).

Each function returns SVG bytes. Figures are created with ``Figure`` directly, never through
``pyplot``, so no global figure state is shared between requests served by different threads.
Matplotlib escapes text in the SVG it writes, so label names cannot inject markup.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

WIDTH_INCHES = 6.4
HEIGHT_INCHES = 3.6
ACCURACY_COLOR = "#1f77b4"
F1_COLOR = "#d62728"
# Markers that distinguish the model setups of one plot.
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P")
# Text stays text in the SVG (smaller files, selectable labels).
_RC: dict[str, Any] = {"svg.fonttype": "none", "font.size": 10.0}
# rc_context changes matplotlib's global rcParams, so one plot is drawn at a time.
_STYLE_LOCK = threading.RLock()
P = ParamSpec("P")


def _styled(draw: Callable[P, bytes]) -> Callable[P, bytes]:
    """Run a plot function under the lock with the module's matplotlib settings."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> bytes:
        with _STYLE_LOCK, matplotlib.rc_context(_RC):  # type: ignore[arg-type]
            return draw(*args, **kwargs)

    return wrapper


def _new_figure(height: float = HEIGHT_INCHES) -> Figure:
    figure = Figure(figsize=(WIDTH_INCHES, height), layout="constrained")
    FigureCanvasSVG(figure)
    return figure


def _to_svg(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg")
    return buffer.getvalue()


@_styled
def message_svg(message: str) -> bytes:
    """Return a blank plot that shows ``message``, for a plot that has no data yet."""
    figure = _new_figure(height=1.6)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", color="#6c757d", wrap=True)
    return _to_svg(figure)


def setup_series(versions: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Return the versions by model setup, each setup's by label count, oldest setup first.

    One line per setup: joining a TF-IDF model to one with embeddings, or two recipes at the
    same label count, would draw a jump that more labels did not cause. Of versions of a setup
    trained on the same labels the latest stands for them, since a retrain without new labels
    would draw a vertical line.
    """
    latest: dict[str, dict[int, Mapping[str, Any]]] = {}
    for version in versions:
        setup = str(version.get("model_name") or "model")
        if version.get("embeddings_status") == "pending":
            setup += " (TF-IDF only)"
        latest.setdefault(setup, {})[int(version["n_labels"])] = version
    return {setup: [by_labels[n] for n in sorted(by_labels)] for setup, by_labels in latest.items()}


@_styled
def learning_curve_svg(versions: Sequence[Mapping[str, Any]]) -> bytes:
    """Plot cross-validated macro-F1 and accuracy of each model version by labels seen.

    Error bars are the standard deviation over the cross-validation folds.
    """
    points = [v for v in versions if v.get("macro_f1") is not None or v.get("accuracy")]
    if not points:
        return message_svg("No model with cross-validated metrics yet: label items and retrain.")
    series = setup_series(points)
    figure = _new_figure()
    axes = figure.add_subplot()
    for number, (setup, members) in enumerate(series.items()):
        marker = SERIES_MARKERS[number % len(SERIES_MARKERS)]
        for key, name, color in (
            ("macro_f1", "macro-F1", F1_COLOR),
            ("accuracy", "accuracy", ACCURACY_COLOR),
        ):
            rows = [
                (int(v["n_labels"]), v[key], v.get(f"{key}_std") or 0.0)
                for v in members
                if v.get(key) is not None
            ]
            if not rows:
                continue
            axes.errorbar(
                [row[0] for row in rows],
                [row[1] for row in rows],
                yerr=[row[2] for row in rows],
                marker=marker,
                capsize=3,
                color=color,
                label=name if len(series) == 1 else f"{name}, {setup}",
            )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("labelled items the model was trained on")
    axes.set_ylabel("cross-validated score")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _to_svg(figure)


@_styled
def live_accuracy_svg(series: Sequence[float], window: int) -> bytes:
    """Plot the rolling share of answers that matched the prediction shown."""
    if not series:
        return message_svg(
            "No answers with a prediction yet: the first model appears after the first training."
        )
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(range(1, len(series) + 1), list(series), color=ACCURACY_COLOR)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("answers with a prediction (most recent on the right)")
    axes.set_ylabel(f"accuracy over the last {window}")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    return _to_svg(figure)


@_styled
def class_balance_svg(counts: Mapping[str, int], colors: Mapping[str, str]) -> bytes:
    """Plot labelled items per label as horizontal bars in the labels' own colours."""
    if not counts or not any(counts.values()):
        return message_svg("No labelled items yet.")
    names = list(counts)
    height = max(1.6, 0.45 * len(names) + 0.8)
    figure = _new_figure(height=min(height, 12.0))
    axes = figure.add_subplot()
    positions = range(len(names))
    values = [counts[name] for name in names]
    axes.barh(positions, values, color=[colors.get(name, "#6c757d") for name in names])
    axes.set_yticks(list(positions), labels=names)
    axes.invert_yaxis()
    for position, value in zip(positions, values, strict=True):
        axes.annotate(
            str(value), (value, position), xytext=(3, 0), textcoords="offset points", va="center"
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("labelled items")
    axes.margins(x=0.12)
    return _to_svg(figure)


@_styled
def confusion_matrix_svg(matrix: Sequence[Sequence[float]], labels: Sequence[str]) -> bytes:
    """Plot a confusion matrix: rows are true labels, columns predicted labels."""
    if not matrix or len(matrix) != len(labels):
        return message_svg("No confusion matrix yet: it comes with the first trained model.")
    size = len(labels)
    side = min(max(3.2, 0.55 * size + 1.8), 12.0)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    FigureCanvasSVG(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_xticks(range(size), labels=list(labels), rotation=45, ha="right")
    axes.set_yticks(range(size), labels=list(labels))
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    peak = max((max(row) for row in matrix), default=0) or 1
    if size <= 20:
        for row_index, row in enumerate(matrix):
            for column_index, value in enumerate(row):
                axes.text(
                    column_index,
                    row_index,
                    f"{value:g}",
                    ha="center",
                    va="center",
                    color="white" if value > peak / 2 else "black",
                )
    return _to_svg(figure)


@_styled
def stopping_curve_svg(
    curve: Sequence[Mapping[str, Any]], fitted: Sequence[Mapping[str, float]]
) -> bytes:
    """Plot macro-F1 by labels with its 95% band over the folds, and the fitted curve.

    The fitted curve runs 100 labels past the last version, where the estimated gain is read.
    """
    if not curve:
        return message_svg("No model with cross-validated folds yet: label items and retrain.")
    figure = _new_figure()
    axes = figure.add_subplot()
    x = [int(point["n_labels"]) for point in curve]
    axes.fill_between(
        x,
        [float(point["low"]) for point in curve],
        [float(point["high"]) for point in curve],
        color=F1_COLOR,
        alpha=0.15,
        label="95% band over folds",
    )
    axes.plot(x, [float(p["mean"]) for p in curve], marker="o", color=F1_COLOR, label="macro-F1")
    if fitted:
        axes.plot(
            [float(p["n_labels"]) for p in fitted],
            [float(p["score"]) for p in fitted],
            linestyle="--",
            color="#6c757d",
            label="fitted curve (+100 labels)",
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("labelled items the model was trained on")
    axes.set_ylabel("cross-validated macro-F1")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _to_svg(figure)


@_styled
def prediction_change_svg(changes: Sequence[Mapping[str, Any]], stable_kappa: float) -> bytes:
    """Plot agreement and Cohen's kappa between each version's predictions and the previous
    version's on the same unlabelled items, with the kappa that counts as stable."""
    if not changes:
        return message_svg("Predictions are compared from the second model version on.")
    figure = _new_figure()
    axes = figure.add_subplot()
    x = [int(change["n_labels"]) for change in changes]
    axes.plot(x, [float(c["kappa"]) for c in changes], marker="o", color=F1_COLOR, label="kappa")
    axes.plot(
        x,
        [float(c["agreement"]) for c in changes],
        marker="s",
        color=ACCURACY_COLOR,
        label="agreement",
    )
    axes.axhline(stable_kappa, color="#6c757d", linestyle=":", label=f"stable ({stable_kappa})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("labelled items of the newer version")
    axes.set_ylabel("same prediction as previous version")
    low = min(0.0, *(float(c["kappa"]) for c in changes))
    axes.set_ylim(low, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _to_svg(figure)


@_styled
def reliability_svg(calibration: Mapping[str, Any] | None) -> bytes:
    """Plot accuracy against mean confidence per confidence bin, before and after scaling.

    The diagonal is perfect calibration; the legend gives each curve's ECE.
    """
    if not calibration or not calibration.get("curve_before"):
        return message_svg("No reliability curve: it comes with models trained by this version.")
    figure = _new_figure(height=4.2)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="#6c757d", label="perfect calibration")
    curves = [("curve_before", "uncalibrated", F1_COLOR)]
    if calibration.get("method") not in (None, "none"):
        curves.append(("curve_after", f"after {calibration['method']} scaling", ACCURACY_COLOR))
    for key, name, color in curves:
        curve = calibration[key]
        points = [
            (c, a)
            for c, a in zip(curve["confidence"], curve["accuracy"], strict=True)
            if c is not None and a is not None
        ]
        axes.plot(
            [c for c, _ in points],
            [a for _, a in points],
            marker="o",
            color=color,
            label=f"{name} (ECE {curve['ece']:.3f})",
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("mean confidence of the predicted label (out-of-fold)")
    axes.set_ylabel("accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return _to_svg(figure)


@_styled
def training_curve_svg(curve: Sequence[Mapping[str, float]], best_epoch: int | None) -> bytes:
    """Plot a neural network's training and validation loss per epoch, and validation
    macro-F1 on a second axis; a vertical line marks the epoch whose weights were kept."""
    if not curve:
        return message_svg("No training curve: the model is not a neural network.")
    figure = _new_figure()
    axes = figure.add_subplot()
    epochs = [int(record["epoch"]) for record in curve]
    axes.plot(
        epochs,
        [r["train_loss"] for r in curve],
        marker="o",
        color=ACCURACY_COLOR,
        label="training loss",
    )
    if all("validation_loss" in record for record in curve):
        axes.plot(
            epochs,
            [r["validation_loss"] for r in curve],
            marker="s",
            color=F1_COLOR,
            label="validation loss",
        )
    if best_epoch:
        axes.axvline(best_epoch, color="#6c757d", linestyle=":", label=f"kept epoch {best_epoch}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("cross-entropy loss")
    axes.grid(alpha=0.3)
    handles, names = axes.get_legend_handles_labels()
    if all("validation_macro_f1" in record for record in curve):
        right = axes.twinx()
        line = right.plot(
            epochs,
            [r["validation_macro_f1"] for r in curve],
            linestyle="--",
            color="#2ca02c",
            label="validation macro-F1",
        )
        right.set_ylim(0, 1.02)
        right.set_ylabel("validation macro-F1")
        handles += line
        names.append("validation macro-F1")
    # Below the axes, because the loss curves cross the middle of the plot.
    figure.legend(handles, names, loc="outside lower center", ncols=2)
    return _to_svg(figure)
