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


@_styled
def learning_curve_svg(versions: Sequence[Mapping[str, Any]]) -> bytes:
    """Plot cross-validated macro-F1 and accuracy of each model version by labels seen.

    Error bars are the standard deviation over the cross-validation folds.
    """
    points = [v for v in versions if v.get("macro_f1") is not None or v.get("accuracy")]
    if not points:
        return message_svg("No model with cross-validated metrics yet: label items and retrain.")
    figure = _new_figure()
    axes = figure.add_subplot()
    x = [int(v["n_labels"]) for v in points]
    for key, name, color in (
        ("macro_f1", "macro-F1", F1_COLOR),
        ("accuracy", "accuracy", ACCURACY_COLOR),
    ):
        rows = [
            (n, v[key], v.get(f"{key}_std") or 0.0)
            for n, v in zip(x, points, strict=True)
            if v.get(key) is not None
        ]
        if not rows:
            continue
        axes.errorbar(
            [row[0] for row in rows],
            [row[1] for row in rows],
            yerr=[row[2] for row in rows],
            marker="o",
            capsize=3,
            color=color,
            label=name,
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
