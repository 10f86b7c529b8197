"""Marshmallow schemas of the API's request and response bodies."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from labelandlearn.storage.models import DEFAULT_MODEL, DEFAULT_STRATEGY
from labelandlearn.web.ids import MAX_ID

# Database ids: positive and within the 64-bit integer columns.
_ID = validate.Range(min=1, max=MAX_ID)


class LabelSchema(Schema):
    id = fields.Integer(load_default=None, allow_none=True)
    name = fields.String(required=True)
    key = fields.String(load_default=None, allow_none=True)
    color = fields.String(load_default=None, allow_none=True)


class ProjectInSchema(Schema):
    name = fields.String(required=True)
    description = fields.String(load_default="")
    labels = fields.List(fields.Nested(LabelSchema), required=True)
    text_column = fields.String(load_default="text")
    id_column = fields.String(load_default=None, allow_none=True)
    label_column = fields.String(load_default=None, allow_none=True)
    model_name = fields.String(load_default=DEFAULT_MODEL)
    strategy_name = fields.String(load_default=DEFAULT_STRATEGY)
    retrain_every = fields.Integer(load_default=50)
    overlap = fields.Integer(load_default=1, metadata={"description": "annotators per item"})
    lease_seconds = fields.Integer(
        load_default=1800, metadata={"description": "how long a handed-out item stays reserved"}
    )
    train_on_single_answers = fields.Boolean(
        load_default=True,
        metadata={"description": "with overlap above 1, train on items with one answer"},
    )


class NextItemsQuerySchema(Schema):
    limit = fields.Integer(load_default=5, validate=validate.Range(min=1, max=50))
    # Marshmallow's Schema has an ``exclude`` option, so the field gets another attribute name.
    exclude_ids = fields.String(
        data_key="exclude",
        load_default="",
        metadata={"description": "comma-separated ids of items the client already holds"},
    )


class ItemPredictionsQuerySchema(Schema):
    ids = fields.String(
        required=True,
        metadata={"description": "comma-separated ids of the items to predict, at most 50"},
    )


class UndoInSchema(Schema):
    answer_id = fields.String(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "the id of the answer to undo, as sent with it; without it the "
            "user's newest stored answer in the project is undone"
        },
    )


class AnswerInSchema(Schema):
    id = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "client-generated UUID; makes retries safe"},
    )
    item_id = fields.Integer(required=True, validate=_ID)
    label_id = fields.Integer(load_default=None, allow_none=True, validate=_ID)
    label = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "label name, instead of label_id"},
    )
    skip = fields.Boolean(load_default=False)
    replace = fields.Boolean(load_default=False)
    predicted_label_id = fields.Integer(load_default=None, allow_none=True, validate=_ID)
    predicted_confidence = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(min=0.0, max=1.0)
    )
    model_version_id = fields.Integer(load_default=None, allow_none=True, validate=_ID)
    # At most a day: a longer time on one item is a clock error, not labelling time.
    duration_ms = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=0, max=86_400_000)
    )


class TrainInSchema(Schema):
    pass


class ImportInSchema(Schema):
    upload_id = fields.String(
        required=True, metadata={"description": "id returned by the upload endpoint"}
    )
    text_column = fields.String(required=True)
    id_column = fields.String(load_default=None, allow_none=True)
    label_column = fields.String(load_default=None, allow_none=True)
    label_map = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=None,
        allow_none=True,
        metadata={"description": "label column value -> label name"},
    )
    duplicates = fields.String(load_default="skip", validate=validate.OneOf(["skip", "keep"]))


class ExportInSchema(Schema):
    format = fields.String(load_default="csv", validate=validate.OneOf(["csv", "jsonl"]))
