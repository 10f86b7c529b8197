"""Model endpoints: model versions and their details, the stopping signal, model files, and
the background embedding job."""

from __future__ import annotations

import io
from typing import Any

from flask import Response, send_file
from flask_smorest import Blueprint

from labelandlearn.learning import project_embeddings
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


@blp.route("/projects/<int:project_id>/models/<int:model_id>")
@blp.response(200)
def get_model(project_id: int, model_id: int) -> dict[str, Any]:
    """Return one model version: settings, metrics, per-class table, confusion matrix,
    calibration, prediction change and, for a neural network, architecture and training curve.
    ``model_id`` is the ``id`` field of the list, not the version number."""
    return service.model_detail(state().db, project_id, model_id)


@blp.route("/projects/<int:project_id>/stopping")
@blp.response(200)
def get_stopping(project_id: int) -> dict[str, Any]:
    """Return whether more labels still improve the model ("still improving", "slowing down",
    "stable", or "too early to tell" before models at three different label counts), with the
    learning curve,
    prediction changes and estimated gain behind it."""
    return service.stopping_report(state().db, project_id)


@blp.route("/projects/<int:project_id>/embeddings")
@blp.response(200)
def get_embeddings(project_id: int) -> dict[str, Any]:
    """Return how many of the project's texts have a cached embedding; ``embeddings`` is null
    when the project's model uses none."""
    return {"embeddings": project_embeddings.embedding_status(state().db, project_id)}


@blp.route("/projects/<int:project_id>/embeddings", methods=["POST"])
@blp.response(202)
def start_embeddings(project_id: int) -> dict[str, Any]:
    """Start the background embed job; ``job_id`` is null when none was needed or one runs."""
    app_state = state()
    job_id = project_embeddings.start_embedding(app_state.db, app_state.runner, project_id)
    return {"job_id": job_id}


def _send_model(project_id: int, model_id: int | None) -> Response:
    weights, filename = service.model_weights(state().db, project_id, model_id)
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


@blp.route("/projects/<int:project_id>/models/<int:model_id>/download")
@requires("manage")
def download_model(project_id: int, model_id: int) -> Response:
    """Download the model whose id ``GET /models/<model_id>`` shows, as one file."""
    return _send_model(project_id, model_id)
