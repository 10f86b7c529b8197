"""Project endpoints: list, create, read, update, delete."""

from __future__ import annotations

from typing import Any

from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import select

from labelandlearn.auth.permissions import visible_project_ids
from labelandlearn.learning.project_embeddings import start_embedding_if_missing
from labelandlearn.services import projects as service
from labelandlearn.storage.models import DEFAULT_MODEL, DEFAULT_STRATEGY, Project
from labelandlearn.web.access import ADMIN, requires
from labelandlearn.web.api.schemas import ProjectInSchema
from labelandlearn.web.state import state

blp = Blueprint("api_projects", __name__, description="Projects and their labels")


def _given(body: dict[str, Any], key: str, default: Any) -> Any:
    """Return the body's value for ``key``, or ``default`` when it is missing or null.

    A 0 sent for a count stays 0, so validation rejects it instead of a default replacing it.
    """
    value = body.get(key)
    return default if value is None else value


def spec_from_body(body: dict[str, Any]) -> service.ProjectSpec:
    return service.ProjectSpec(
        name=body["name"],
        description=body.get("description") or "",
        labels=[service.LabelSpec(**label) for label in body["labels"]],
        text_column=body.get("text_column") or "text",
        id_column=body.get("id_column"),
        label_column=body.get("label_column"),
        model_name=body.get("model_name") or DEFAULT_MODEL,
        strategy_name=body.get("strategy_name") or DEFAULT_STRATEGY,
        retrain_every=_given(body, "retrain_every", 50),
        overlap=_given(body, "overlap", 1),
        lease_seconds=_given(body, "lease_seconds", 1800),
        train_on_single_answers=body.get("train_on_single_answers", True),
    )


@blp.route("/projects")
@blp.response(200)
def list_projects() -> dict[str, Any]:
    with state().db.session() as session:
        query = select(Project).order_by(Project.name)
        visible = visible_project_ids(session, current_user.id, current_user.is_admin)
        if visible is not None:
            query = query.where(Project.id.in_(visible))
        projects = session.scalars(query)
        return {"projects": [service.project_summary(session, p) for p in projects]}


@blp.route("/projects", methods=["POST"])
@requires(ADMIN)
@blp.arguments(ProjectInSchema)
@blp.response(201)
def create_project(body: dict[str, Any]) -> dict[str, Any]:
    project_id = service.create_project(state().db, spec_from_body(body))
    with state().db.session() as session:
        return service.project_summary(session, service.get_project(session, project_id))


@blp.route("/projects/<int:project_id>")
@blp.response(200)
def get_project(project_id: int) -> dict[str, Any]:
    with state().db.session() as session:
        return service.project_summary(session, service.get_project(session, project_id))


@blp.route("/projects/<int:project_id>", methods=["PUT"])
@blp.arguments(ProjectInSchema)
@blp.response(200)
def update_project(body: dict[str, Any], project_id: int) -> dict[str, Any]:
    app_state = state()
    if service.update_project(app_state.db, project_id, spec_from_body(body)):
        app_state.runner.submit("score", project_id, {"reason": "strategy changed"})
    if app_state.settings.embeddings == "background":
        # A switch to a model with embeddings needs the items embedded.
        start_embedding_if_missing(app_state.db, app_state.runner, project_id)
    with app_state.db.session() as session:
        return service.project_summary(session, service.get_project(session, project_id))


@blp.route("/projects/<int:project_id>", methods=["DELETE"])
@blp.response(204)
def delete_project(project_id: int) -> None:
    service.delete_project(state().db, project_id, state().settings.data_dir)
