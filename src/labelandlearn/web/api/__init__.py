"""The JSON API under /api/v1, documented as OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api
from flask_smorest.spec.plugins import integerconverter2paramschema
from marshmallow import Schema, fields

from labelandlearn.web.ids import IdConverter


class ErrorDetailSchema(Schema):
    """Error details: the HTTP status, its name, and a message with the fix."""

    status = fields.Integer(metadata={"description": "HTTP status code"})
    code = fields.String(metadata={"description": "status name, such as not_found"})
    message = fields.String()
    details = fields.Dict(metadata={"description": "more data, such as the current answer"})


class ErrorSchema(Schema):
    """The one error body of the API; the app's error handlers write it."""

    error = fields.Nested(ErrorDetailSchema)


class LabelAndLearnApi(Api):
    """flask-smorest's Api, documenting the error body that the app's handlers return."""

    ERROR_SCHEMA = ErrorSchema


def register_api(app: Flask) -> Api:
    from labelandlearn.web.api import exports, imports, jobs, labelling, models, projects, team

    api = LabelAndLearnApi(app)
    api.register_converter(IdConverter, integerconverter2paramschema)
    for module in (projects, labelling, jobs, imports, exports, models, team):
        api.register_blueprint(module.blp, url_prefix="/api/v1")
    return api
