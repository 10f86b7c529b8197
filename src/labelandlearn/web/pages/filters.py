"""Jinja filters shared by the templates."""

from __future__ import annotations

from flask import Flask


def contrast_text_color(background: str) -> str:
    """Return ``#000`` or ``#fff``, whichever reads better on a ``#rrggbb`` background."""
    try:
        red, green, blue = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    except (ValueError, TypeError):
        return "#000"
    # Relative luminance weights of ITU-R BT.601, good enough to pick black or white text.
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    return "#000" if luminance > 150 else "#fff"


def percent(value: float | None, digits: int = 1) -> str:
    """Format a share from 0 to 1 as a percentage, or an en dash when there is none."""
    if value is None:
        return "–"
    return f"{100 * value:.{digits}f}%"


def score(value: float | None) -> str:
    """Format a metric from 0 to 1 with three decimals, or an en dash when there is none."""
    return "–" if value is None else f"{value:.3f}"


def register_filters(app: Flask) -> None:
    app.add_template_filter(contrast_text_color, "contrast_text")
    app.add_template_filter(percent, "percent")
    app.add_template_filter(score, "score")
