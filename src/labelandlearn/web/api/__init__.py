"""The JSON API under /api/v1, documented as OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api


def register_api(app: Flask) -> Api:
    from labelandlearn.web.api import jobs, labelling, projects

    api = Api(app)
    for module in (projects, labelling, jobs):
        api.register_blueprint(module.blp, url_prefix="/api/v1")
    for module_name in ("imports", "exports", "models", "team"):
        module = _optional_module(module_name)
        if module is not None:
            api.register_blueprint(module.blp, url_prefix="/api/v1")
    return api


def _optional_module(name: str):  # type: ignore[no-untyped-def]
    import importlib

    try:
        return importlib.import_module(f"labelandlearn.web.api.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"labelandlearn.web.api.{name}":
            raise
        return None
