"""The labelling screen; the browser talks to the labelling API from static/js/label.js."""

from __future__ import annotations

from flask import Blueprint, render_template

from labelandlearn.services.projects import get_project, project_summary
from labelandlearn.web.access import requires
from labelandlearn.web.state import state

bp = Blueprint("labelling", __name__)


@bp.route("/projects/<int:project_id>/label")
@requires("label")
def label_page(project_id: int) -> str:
    with state().db.session() as session:
        project = project_summary(session, get_project(session, project_id))
    return render_template("projects/label.html", project=project)
