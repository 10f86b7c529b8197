"""The project dashboard (counts, model versions, stopping signal, SVG plots), the page of one
model version, and the button that starts the background embedding job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from labelandlearn.errors import NotFoundError
from labelandlearn.learning import project_embeddings
from labelandlearn.learning.stopping import STABLE_KAPPA
from labelandlearn.services import dashboard as models_service
from labelandlearn.services import labelling
from labelandlearn.services.projects import get_project, project_summary
from labelandlearn.web import plots
from labelandlearn.web.state import state

bp = Blueprint("dashboard", __name__)

PLOTS = (
    "learning-curve",
    "live-accuracy",
    "class-balance",
    "confusion-matrix",
    "stopping-curve",
    "prediction-change",
    "reliability",
)
MODEL_PLOTS = ("confusion-matrix", "reliability", "training-curve")
VERDICT_STYLES = {
    "still improving": "success",
    "slowing down": "warning",
    "stable": "secondary",
    "too early to tell": "secondary",
}


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
    stopping = models_service.stopping_report(db, project_id)
    return render_template(
        "projects/dashboard.html",
        project=project,
        progress=labelling.progress(db, project_id),
        live=live,
        versions=list(reversed(models_service.list_model_versions(db, project_id))),
        current=current,
        per_class=models_service.per_class_rows(current) if current else [],
        plots=PLOTS,
        stopping=stopping,
        stopping_message=_without_verdict(stopping["message"], stopping["verdict"]),
        verdict_style=VERDICT_STYLES.get(stopping["verdict"], "secondary"),
        last_change=(stopping["prediction_changes"] or [None])[-1],
        embeddings=project_embeddings.embedding_status(db, project_id),
    )


def _without_verdict(message: str, verdict: str) -> str:
    """Drop the message's opening "Verdict." sentence, which the badge above it shows."""
    return message.removeprefix(f"{verdict.capitalize()}. ")


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
    if name in ("stopping-curve", "prediction-change"):
        stopping = models_service.stopping_report(db, project_id)
        if name == "stopping-curve":
            return plots.stopping_curve_svg(stopping["curve"], stopping["fitted"])
        return plots.prediction_change_svg(stopping["prediction_changes"], STABLE_KAPPA)
    current = models_service.current_model_summary(db, project_id)
    if current is None:
        return plots.message_svg("No model yet: label some items and press Retrain.")
    if name == "reliability":
        return plots.reliability_svg(current.metrics.get("calibration"))
    return plots.confusion_matrix_svg(current.metrics.get("confusion_matrix") or [], current.labels)


def _svg_response(svg: bytes) -> Response:
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/projects/<int:project_id>/plots/<name>.svg")
def plot(project_id: int, name: str) -> Response:
    if name not in PLOTS:
        raise NotFoundError(f"plot {name!r} not found; plots are: {', '.join(PLOTS)}")
    _summary(project_id)
    return _svg_response(_plot_svg(project_id, name))


@bp.route("/projects/<int:project_id>/models/<int:model_id>")
def model_page(project_id: int, model_id: int) -> str:
    detail = models_service.model_detail(state().db, project_id, model_id)
    return render_template(
        "projects/model.html",
        project=_summary(project_id),
        detail=detail,
        plots=[name for name in MODEL_PLOTS if name != "training-curve" or detail["network"]],
    )


_MODEL_PLOT_DRAWERS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "confusion-matrix": lambda d: plots.confusion_matrix_svg(d["confusion_matrix"], d["labels"]),
    "reliability": lambda d: plots.reliability_svg(d["calibration"]),
    "training-curve": lambda d: plots.training_curve_svg(
        (d["network"] or {}).get("training_curve") or [], (d["network"] or {}).get("best_epoch")
    ),
}


@bp.route("/projects/<int:project_id>/models/<int:model_id>/plots/<name>.svg")
def model_plot(project_id: int, model_id: int, name: str) -> Response:
    if name not in _MODEL_PLOT_DRAWERS:
        raise NotFoundError(f"plot {name!r} not found; plots are: {', '.join(MODEL_PLOTS)}")
    detail = models_service.model_detail(state().db, project_id, model_id)
    return _svg_response(_MODEL_PLOT_DRAWERS[name](detail))


@bp.route("/projects/<int:project_id>/embeddings", methods=["POST"])
def start_embeddings(project_id: int) -> BaseResponse:
    """Start the background embed job of the project (the dashboard's button)."""
    app_state = state()
    _summary(project_id)
    job_id = project_embeddings.start_embedding(app_state.db, app_state.runner, project_id)
    if job_id is None:
        flash(
            "No embedding job started: one is already running, the model uses no embeddings, "
            "or the embedding backend is not installed.",
            "warning",
        )
    else:
        flash("Computing embeddings in the background; labelling goes on meanwhile.", "info")
    return redirect(url_for("dashboard.show", project_id=project_id))
