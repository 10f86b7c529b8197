"""Project pages: list, create, edit and delete (with a confirmation page)."""

from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from labelandlearn.auth.permissions import visible_project_ids
from labelandlearn.errors import LabelAndLearnError
from labelandlearn.learning.project_embeddings import start_embedding_if_missing
from labelandlearn.services import projects as service
from labelandlearn.storage.models import Project
from labelandlearn.web.access import ADMIN, requires
from labelandlearn.web.pages.forms import DeleteForm, ProjectForm, default_label_rows
from labelandlearn.web.state import state

logger = logging.getLogger(__name__)

bp = Blueprint("projects", __name__)


def model_choices() -> list[tuple[str, str]]:
    """Return (recipe name, description) pairs of the models a project can use."""
    from labelandlearn.learning.base import MODEL_RECIPES, recipe_names
    from labelandlearn.services.projects import missing_extra

    choices = []
    for name in recipe_names():
        description = MODEL_RECIPES[name].description
        missing = missing_extra(name)
        if missing:
            description = f"{description} Not available here: it {missing}."
        choices.append((name, f"{name}: {description}" if description else name))
    return choices


def strategy_choices() -> list[tuple[str, str]]:
    """Return (name, description) pairs of the registered query strategies."""
    from labelandlearn.learning.strategies import get_strategy, strategy_names

    choices = []
    for name in strategy_names():
        description = get_strategy(name).description
        choices.append((name, f"{name}: {description}" if description else name))
    return choices


def _project_form() -> ProjectForm:
    form = ProjectForm()
    form.set_choices(model_choices(), strategy_choices())
    return form


def _summary(project_id: int) -> dict[str, object]:
    with state().db.session() as session:
        return service.project_summary(session, service.get_project(session, project_id))


@bp.route("/")
def index() -> str:
    with state().db.session() as session:
        query = select(Project).order_by(Project.name)
        visible = visible_project_ids(session, current_user.id, current_user.is_admin)
        if visible is not None:
            query = query.where(Project.id.in_(visible))
        projects = [service.project_summary(session, project) for project in session.scalars(query)]
    return render_template("projects/index.html", projects=projects)


@bp.route("/projects/new", methods=["GET", "POST"])
@requires(ADMIN)
def create() -> str | Response:
    form = _project_form()
    error = None
    if form.validate_on_submit():
        try:
            project_id = service.create_project(state().db, form.to_spec())
        except LabelAndLearnError as exc:
            error = str(exc)
        else:
            flash(f"Project {form.name.data} created. Import a file to add items.", "success")
            return redirect(url_for("imports.upload_page", project_id=project_id))
    default_label_rows(form)
    return render_template("projects/form.html", form=form, error=error, project=None)


@bp.route("/projects/<int:project_id>/edit", methods=["GET", "POST"])
@requires("manage")
def edit(project_id: int) -> str | Response:
    summary = _summary(project_id)
    form = _project_form()
    error = None
    if form.validate_on_submit():
        try:
            strategy_changed = service.update_project(state().db, project_id, form.to_spec())
        except LabelAndLearnError as exc:
            error = str(exc)
        else:
            if strategy_changed:
                state().runner.submit("score", project_id, {"reason": "strategy changed"})
            _embed_for_new_model(project_id)
            flash("Project settings saved.", "success")
            return redirect(url_for("dashboard.show", project_id=project_id))
    elif not form.is_submitted():
        form.fill_from_summary(summary)
    return render_template("projects/form.html", form=form, error=error, project=summary)


@bp.route("/projects/<int:project_id>/delete", methods=["GET", "POST"])
@requires("manage")
def delete(project_id: int) -> str | Response:
    summary = _summary(project_id)
    form = DeleteForm()
    if form.validate_on_submit():
        service.delete_project(state().db, project_id, state().settings.data_dir)
        flash(f"Project {summary['name']} deleted.", "success")
        return redirect(url_for("projects.index"))
    return render_template("projects/delete.html", form=form, project=summary)


def _embed_for_new_model(project_id: int) -> None:
    """Start the embed job when the saved model needs embeddings that items lack."""
    app_state = state()
    if app_state.settings.embeddings == "background":
        start_embedding_if_missing(app_state.db, app_state.runner, project_id)
