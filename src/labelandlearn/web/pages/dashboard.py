"""The project dashboard: counts, model versions, per-class metrics and SVG plots."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template

from labelandlearn.errors import NotFoundError
from labelandlearn.services import dashboard as models_service
from labelandlearn.services import labelling
from labelandlearn.services.projects import get_project, project_summary
from labelandlearn.web import plots
from labelandlearn.web.state import state

bp = Blueprint("dashboard", __name__)

PLOTS = ("learning-curve", "live-accuracy", "class-balance", "confusion-matrix")


def _summary(project_id: int) -> dict[str, Any]:
    with state().db.session() as session:
        return project_summary(session, get_project(session, project_id))


@bp.route("/projects/<int:project_id>")
def show(project_id: int) -> str:
    db = state().db
    project = _summary(project_id)
    current = models_service.current_model_summary(db, project_id)
    live = labelling.live_accuracy(db, project_id)
    live.pop("series", None)
    return render_template(
        "projects/dashboard.html",
        project=project,
        progress=labelling.progress(db, project_id),
        live=live,
        versions=list(reversed(models_service.list_model_versions(db, project_id))),
        current=current,
        per_class=models_service.per_class_rows(current) if current else [],
        plots=PLOTS,
    )


def _plot_svg(project_id: int, name: str) -> bytes:
    db = state().db
    if name == "learning-curve":
        return plots.learning_curve_svg(models_service.list_model_versions(db, project_id))
    if name == "live-accuracy":
        live = labelling.live_accuracy(db, project_id)
        return plots.live_accuracy_svg(live["series"], live["window"])
    if name == "class-balance":
        project = _summary(project_id)
        colors = {label["name"]: label["color"] for label in project["labels"]}
        counts = labelling.progress(db, project_id)["per_label"]
        return plots.class_balance_svg(counts, colors)
    current = models_service.current_model_summary(db, project_id)
    if current is None:
        return plots.message_svg("No model yet: label some items and press Retrain.")
    return plots.confusion_matrix_svg(current.metrics.get("confusion_matrix") or [], current.labels)


@bp.route("/projects/<int:project_id>/plots/<name>.svg")
def plot(project_id: int, name: str) -> Response:
    if name not in PLOTS:
        raise NotFoundError(f"plot {name!r} not found; plots are: {', '.join(PLOTS)}")
    _summary(project_id)
    response = Response(_plot_svg(project_id, name), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-store"
    return response
