"""SVG plots of the team figures, returned as bytes for the team page.

Figures are built from :class:`matplotlib.figure.Figure` directly, not through pyplot, so
requests share no global figure state and no display is needed.
"""

from __future__ import annotations

import io
import logging
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from labelandlearn.team.stats import TeamStats

logger = logging.getLogger(__name__)

# A heatmap with more annotators than this is unreadable; the most active ones are shown.
MAX_HEATMAP_ANNOTATORS = 40
MAX_BAR_ANNOTATORS = 60


def _svg(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # A fixed hash salt and no date make the same figures give the same bytes.
    with matplotlib.rc_context({"svg.hashsalt": "labelandlearn", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()


def _most_active(stats: TeamStats, limit: int) -> list[int]:
    """Return the indices of the ``limit`` annotators with the most labelled answers."""
    order = sorted(
        range(len(stats.annotators)),
        key=lambda index: (-stats.annotators[index].labelled, stats.annotators[index].username),
    )
    return sorted(order[:limit])


def kappa_heatmap_svg(stats: TeamStats, *, max_annotators: int = MAX_HEATMAP_ANNOTATORS) -> bytes:
    """Draw the pairwise Cohen's kappa matrix; grey cells are pairs without a kappa."""
    shown = _most_active(stats, max_annotators)
    names = [stats.annotators[index].username for index in shown]
    matrix = stats.cohen.kappa[np.ix_(shown, shown)] if shown else np.zeros((0, 0))

    size = max(3.0, 0.35 * len(names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    if len(names) < 2:
        axes.set_axis_off()
        axes.text(0.5, 0.5, "No annotator pairs yet", ha="center", va="center")
        return _svg(figure)
    masked = np.ma.masked_invalid(matrix)
    colormap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    image = axes.imshow(masked, cmap=colormap, vmin=-1.0, vmax=1.0)
    axes.set_xticks(range(len(names)), names, rotation=90)
    axes.set_yticks(range(len(names)), names)
    if len(names) <= 12:
        for row in range(len(names)):
            for col in range(len(names)):
                value = matrix[row, col]
                if not math.isnan(value):
                    axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=axes, label="Cohen's kappa")
    title = "Pairwise Cohen's kappa"
    if len(shown) < len(stats.annotators):
        title += f" ({len(shown)} most active of {len(stats.annotators)} annotators)"
    axes.set_title(title)
    return _svg(figure)


def annotator_bars_svg(stats: TeamStats, *, max_annotators: int = MAX_BAR_ANNOTATORS) -> bytes:
    """Draw two bar charts per annotator: agreement with the majority and answers per hour."""
    shown = _most_active(stats, max_annotators)
    annotators = [stats.annotators[index] for index in shown]
    names = [annotator.username for annotator in annotators]
    agreement = [
        np.nan if annotator.majority_agreement is None else annotator.majority_agreement
        for annotator in annotators
    ]
    per_hour = [
        np.nan if annotator.speed.answers_per_hour is None else annotator.speed.answers_per_hour
        for annotator in annotators
    ]

    width = max(5.0, 0.3 * len(names) + 2.0)
    figure = Figure(figsize=(width, 6.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    positions = np.arange(len(names))
    top.bar(positions, agreement, color="#1f77b4")
    top.set_ylim(0.0, 1.0)
    top.set_ylabel("agreement with majority")
    top.set_title("Per annotator")
    bottom.bar(positions, per_hour, color="#ff7f0e")
    bottom.set_ylabel("answers per hour")
    bottom.set_xticks(positions, names, rotation=90)
    return _svg(figure)
