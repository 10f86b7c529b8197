"""The import page; uploads and import jobs go through the API from static/js/import.js."""

from __future__ import annotations

from flask import Blueprint, render_template

from labelandlearn.services.projects import get_project, project_summary
from labelandlearn.web.access import requires
from labelandlearn.web.state import state

bp = Blueprint("imports", __name__)


@bp.route("/projects/<int:project_id>/import")
@requires("manage")
def upload_page(project_id: int) -> str:
    with state().db.session() as session:
        project = project_summary(session, get_project(session, project_id))
    return render_template(
        "projects/import.html",
        project=project,
        max_upload_mb=state().settings.max_upload_mb,
    )
