"""Team pages: agreement and speed of the annotators, and the review queue."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from labelandlearn.errors import LabelAndLearnError, NotFoundError
from labelandlearn.services.projects import get_project
from labelandlearn.storage.models import Item
from labelandlearn.team.plots import annotator_bars_svg, kappa_heatmap_svg
from labelandlearn.team.review import resolve, review_queue
from labelandlearn.team.stats import team_stats
from labelandlearn.web.access import requires
from labelandlearn.web.state import state

bp = Blueprint("team", __name__)


class DecisionForm(FlaskForm):
    """CSRF token of the review decision buttons."""


def _project_name(project_id: int) -> str:
    with state().db.session() as session:
        return get_project(session, project_id).name


@bp.route("/projects/<int:project_id>/team")
@requires("view")
def team(project_id: int) -> str:
    stats = team_stats(state().db, project_id).as_dict()
    return render_template(
        "team/team.html",
        project_id=project_id,
        project_name=_project_name(project_id),
        stats=stats,
    )


@bp.route("/projects/<int:project_id>/team/<string:plot>.svg")
@requires("view")
def team_plot(project_id: int, plot: str) -> Response:
    plots = {"kappa": kappa_heatmap_svg, "annotators": annotator_bars_svg}
    if plot not in plots:
        raise NotFoundError(f"plot {plot!r} not found; plots: {', '.join(plots)}")
    svg = plots[plot](team_stats(state().db, project_id))
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})


@bp.route("/projects/<int:project_id>/review")
@requires("review")
def review(project_id: int) -> str:
    offset = max(0, request.args.get("offset", 0, type=int) or 0)
    page = review_queue(state().db, project_id, limit=25, offset=offset)
    with state().db.session() as session:
        project = get_project(session, project_id)
        labels = [(label.id, label.name, label.color) for label in project.labels]
        name = project.name
    return render_template(
        "team/review.html",
        project_id=project_id,
        project_name=name,
        page=page,
        labels=labels,
        offset=offset,
        form=DecisionForm(),
    )


@bp.route("/projects/<int:project_id>/review/<int:item_id>", methods=["POST"])
@requires("review")
def decide(project_id: int, item_id: int) -> Any:
    if not DecisionForm().validate_on_submit():
        flash("The form expired; reload the page and try again.", "error")
        return redirect(url_for("team.review", project_id=project_id))
    with state().db.session() as session:
        item = session.get(Item, item_id)
        if item is None or item.project_id != project_id:
            raise NotFoundError(f"item {item_id} not found in project {project_id}")
    try:
        decision = resolve(
            state().db, item_id, current_user.id, request.form.get("label_id", type=int) or 0
        )
        flash(f"Item {item_id} decided as {decision['label']}.", "success")
    except LabelAndLearnError as error:
        flash(str(error), "error")
    return redirect(url_for("team.review", project_id=project_id))
