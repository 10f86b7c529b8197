"""The JSON API under /api/v1, documented as OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api


def register_api(app: Flask) -> Api:
    from labelandlearn.web.api import exports, imports, jobs, labelling, models, projects, team

    api = Api(app)
    from flask_smorest.spec.plugins import integerconverter2paramschema

    from labelandlearn.web.ids import IdConverter

    api.register_converter(IdConverter, integerconverter2paramschema)
    for module in (projects, labelling, jobs, imports, exports, models, team):
        api.register_blueprint(module.blp, url_prefix="/api/v1")
    return api
