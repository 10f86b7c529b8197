"""Labelling endpoints: next items, answers, undo, progress, live accuracy, retrain."""

from __future__ import annotations

from typing import Any

from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import select

from labelandlearn.errors import ValidationError
from labelandlearn.services import labelling as service
from labelandlearn.services.projects import get_project
from labelandlearn.storage.models import Item, Job
from labelandlearn.web.access import (
    checked_project,
    request_session,
    requires,
    uses_request_session,
)
from labelandlearn.web.api.schemas import (
    AnswerInSchema,
    ItemPredictionsQuerySchema,
    NextItemsQuerySchema,
    UndoInSchema,
)
from labelandlearn.web.ids import MAX_ID
from labelandlearn.web.state import state

blp = Blueprint("api_labelling", __name__, description="Labelling: items, answers, progress")


def _parse_ids(raw: str, parameter: str = "exclude") -> list[int]:
    """Return the ids of a comma-separated list; raise ValidationError for anything else."""
    ids = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        # isdigit() alone accepts digits such as "²" that int() rejects or reads otherwise.
        if not (part.isascii() and part.isdigit()) or int(part) > MAX_ID:
            raise ValidationError(
                f"{parameter} must list item ids separated by commas, got {part!r}"
            )
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


@blp.route("/projects/<int:project_id>/items/predictions")
@requires("label")
@blp.arguments(ItemPredictionsQuerySchema(), location="query")
@blp.response(200)
def item_predictions(query: dict[str, Any], project_id: int) -> dict[str, Any]:
    """Return the current model's prediction of each listed item, in the shape of next items.

    The labelling screen calls this when a new model version became current, so that the item
    on screen and the prefetched ones show the new model's suggestion. Ids of items that are
    not in the project are left out. ``prediction`` is null while the project has no model.
    """
    ids = _parse_ids(query["ids"], "ids")
    if len(ids) > service.MAX_BATCH:
        raise ValidationError(f"ids lists {len(ids)} items; send at most {service.MAX_BATCH}")
    app_state = state()
    with app_state.db.session() as session:
        project = checked_project() or service.load_project_state(session, project_id)
        rows = session.execute(
            select(Item.id, Item.text).where(Item.project_id == project_id, Item.id.in_(ids))
        ).all()
    payload = [{"id": row.id, "text": row.text} for row in rows]
    if payload:
        # While a newer model loads in the background, predict() serves the previous one. get()
        # waits for the load, so the predictions come from the model that is now current.
        app_state.models.get(app_state.db, project_id)
        service.attach_predictions(app_state.db, project, payload, app_state.models)
    return {
        "items": [{"id": entry["id"], "prediction": entry.get("prediction")} for entry in payload]
    }


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
@blp.arguments(UndoInSchema(), required=False)
@blp.response(200)
def undo(body: dict[str, Any] | None, project_id: int) -> dict[str, Any]:
    with state().db.session() as session:
        get_project(session, project_id)
    answer_id = (body or {}).get("answer_id")
    result = service.undo_last(state().db, project_id, current_user.id, answer_id=answer_id)
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
        # A training job that has not started yet will see every label there is, so another
        # request joins it instead of queuing a second one.
        queued = session.scalar(
            select(Job.id)
            .where(Job.project_id == project_id, Job.kind == "train", Job.status == "queued")
            .limit(1)
        )
    if queued is not None:
        return {"job_id": queued}
    job_id = state().runner.submit("train", project_id, {"reason": "manual"})
    return {"job_id": job_id}
