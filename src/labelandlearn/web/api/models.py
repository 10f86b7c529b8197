"""Model endpoints: list a project's model versions, download a model file."""

from __future__ import annotations

import io
from typing import Any

from flask import Response, send_file
from flask_smorest import Blueprint

from labelandlearn.services import dashboard as service
from labelandlearn.web.access import requires
from labelandlearn.web.state import state

blp = Blueprint("api_models", __name__, description="Trained model versions")

MODEL_MIMETYPE = "application/zip"


@blp.route("/projects/<int:project_id>/models")
@blp.response(200)
def list_models(project_id: int) -> dict[str, Any]:
    """List model versions, oldest first, with labels seen and cross-validated metrics."""
    return {"models": service.list_model_versions(state().db, project_id)}


def _send_model(project_id: int, version: int | None) -> Response:
    weights, filename = service.model_weights(state().db, project_id, version)
    return send_file(
        io.BytesIO(weights),
        mimetype=MODEL_MIMETYPE,
        as_attachment=True,
        download_name=filename,
        max_age=0,
    )


@blp.route("/projects/<int:project_id>/models/current/download")
@requires("manage")
def download_current_model(project_id: int) -> Response:
    """Download the current model as one file that ``labelandlearn predict`` loads."""
    return _send_model(project_id, None)


@blp.route("/projects/<int:project_id>/models/<int:version>/download")
@requires("manage")
def download_model(project_id: int, version: int) -> Response:
    return _send_model(project_id, version)
