"""Project pages: the list of projects."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from labelandlearn.services.projects import project_summary
from labelandlearn.storage.models import Project
from labelandlearn.web.state import state

bp = Blueprint("projects", __name__)


@bp.route("/")
def index() -> str:
    with state().db.session() as session:
        projects = [
            project_summary(session, project)
            for project in session.scalars(select(Project).order_by(Project.name))
        ]
    return render_template("projects/index.html", projects=projects)
