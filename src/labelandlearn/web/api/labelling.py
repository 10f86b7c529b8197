"""Labelling endpoints: next items, answers, undo, progress, live accuracy, retrain."""

from __future__ import annotations

from typing import Any

from flask_login import current_user
from flask_smorest import Blueprint

from labelandlearn.errors import ValidationError
from labelandlearn.services import labelling as service
from labelandlearn.services.projects import get_project
from labelandlearn.web.access import (
    checked_project,
    request_session,
    requires,
    uses_request_session,
)
from labelandlearn.web.api.schemas import AnswerInSchema, NextItemsQuerySchema
from labelandlearn.web.state import state

blp = Blueprint("api_labelling", __name__, description="Labelling: items, answers, progress")


def _parse_ids(raw: str) -> list[int]:
    ids = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ValidationError(f"exclude must list item ids separated by commas, got {part!r}")
        ids.append(int(part))
    return ids


# The two labelling endpoints run once per key press, so they continue the access check's
# database session and project state, and parse with schema instances: a schema class would
# be instantiated on every request.
@blp.route("/projects/<int:project_id>/items/next")
@requires("label")
@uses_request_session
@blp.arguments(NextItemsQuerySchema(), location="query")
@blp.response(200)
def next_items(query: dict[str, Any], project_id: int) -> dict[str, Any]:
    app_state = state()
    items = service.next_items(
        app_state.db,
        project_id,
        current_user.id,
        limit=query["limit"],
        exclude=_parse_ids(query["exclude_ids"]),
        predictor=app_state.models,
        session=request_session(),
        project=checked_project(),
    )
    return {"items": items}


@blp.route("/projects/<int:project_id>/answers", methods=["POST"])
@requires("label")
@uses_request_session
@blp.arguments(AnswerInSchema())
@blp.response(201)
def submit_answer(body: dict[str, Any], project_id: int) -> dict[str, Any]:
    app_state = state()
    label_id = body["label_id"]
    if label_id is None and body["label"] is None and not body["skip"]:
        raise ValidationError("send label_id or label, or skip=true to skip the item")
    answer = service.AnswerInput(
        item_id=body["item_id"],
        label_id=None if body["skip"] else label_id,
        label_name=None if body["skip"] else body["label"],
        answer_id=body["id"],
        predicted_label_id=body["predicted_label_id"],
        predicted_confidence=body["predicted_confidence"],
        model_version_id=body["model_version_id"],
        duration_ms=body["duration_ms"],
        replace=body["replace"],
    )
    return service.submit_answer(
        app_state.db,
        project_id,
        current_user.id,
        answer,
        predictor=app_state.models,
        runner=app_state.runner,
        session=request_session(),
        project=checked_project(),
    )


@blp.route("/projects/<int:project_id>/answers/undo", methods=["POST"])
@requires("label")
@blp.response(200)
def undo(project_id: int) -> dict[str, Any]:
    with state().db.session() as session:
        get_project(session, project_id)
    result = service.undo_last(state().db, project_id, current_user.id)
    return result or {"item": None, "undone": None}


@blp.route("/projects/<int:project_id>/progress")
@blp.response(200)
def progress(project_id: int) -> dict[str, Any]:
    with state().db.session() as session:
        get_project(session, project_id)
    return {
        "progress": service.progress(state().db, project_id, current_user.id),
        "live_accuracy": {
            key: value
            for key, value in service.live_accuracy(state().db, project_id).items()
            if key != "series"
        },
    }


@blp.route("/projects/<int:project_id>/train", methods=["POST"])
@requires("manage")
@blp.response(202)
def train(project_id: int) -> dict[str, Any]:
    with state().db.session() as session:
        get_project(session, project_id)
    job_id = state().runner.submit("train", project_id, {"reason": "manual"})
    return {"job_id": job_id}
