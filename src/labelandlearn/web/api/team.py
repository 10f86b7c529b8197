"""Team endpoints: agreement and speed figures, the review queue and review decisions."""

from __future__ import annotations

from typing import Any

from flask_login import current_user
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from labelandlearn.errors import NotFoundError
from labelandlearn.storage.models import Item
from labelandlearn.team.review import DEFAULT_CONFIDENCE, MAX_PAGE, resolve, review_queue
from labelandlearn.team.stats import team_stats
from labelandlearn.web.access import requires
from labelandlearn.web.state import state

blp = Blueprint("api_team", __name__, description="Agreement, review queue and decisions")


class ReviewQuerySchema(Schema):
    confidence = fields.Float(load_default=DEFAULT_CONFIDENCE, validate=validate.Range(0, 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_PAGE))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class DecisionSchema(Schema):
    label_id = fields.Integer(required=True)


@blp.route("/projects/<int:project_id>/team")
@requires("view")
@blp.response(200)
def get_team(project_id: int) -> dict[str, Any]:
    return team_stats(state().db, project_id).as_dict()


@blp.route("/projects/<int:project_id>/review")
@requires("review")
@blp.arguments(ReviewQuerySchema, location="query")
@blp.response(200)
def get_review_queue(query: dict[str, Any], project_id: int) -> dict[str, Any]:
    page = review_queue(state().db, project_id, **query)
    return {
        "total": page.total,
        "items": [entry.__dict__ for entry in page.entries],
    }


@blp.route("/projects/<int:project_id>/review/<int:item_id>", methods=["POST"])
@requires("review")
@blp.arguments(DecisionSchema)
@blp.response(201)
def decide(body: dict[str, Any], project_id: int, item_id: int) -> dict[str, Any]:
    with state().db.session() as session:
        item = session.get(Item, item_id)
        if item is None or item.project_id != project_id:
            raise NotFoundError(f"item {item_id} not found in project {project_id}")
    return resolve(state().db, item_id, current_user.id, body["label_id"])
