"""The one access check of every request: who the user is, and what they may do.

Each view may declare the action it needs with ``@requires(...)``; without it, safe methods
need "view" and others "manage". Ids in the URL (project_id, item_id, job_id, model_id) are
resolved to their project, and a user who may not do the action there gets 404.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Connection, Table, and_, bindparam, select

from labelandlearn.auth.permissions import ROLE_ACTIONS
from labelandlearn.errors import LabelAndLearnError, NotFoundError
from labelandlearn.storage.models import Item, Job, Membership, ModelVersion, Project
from labelandlearn.web.state import state

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC = "public"
AUTHENTICATED = "authenticated"
ADMIN = "admin"

PROJECTS: Table = Project.__table__  # type: ignore[assignment]
MEMBERSHIPS: Table = Membership.__table__  # type: ignore[assignment]

# Built once, so SQLAlchemy reuses their memoized cache keys on every request.
_PROJECT_AND_ROLE = (
    select(PROJECTS.c.id, MEMBERSHIPS.c.role)
    .select_from(
        PROJECTS.outerjoin(
            MEMBERSHIPS,
            and_(
                MEMBERSHIPS.c.project_id == PROJECTS.c.id,
                MEMBERSHIPS.c.user_id == bindparam("user_id"),
            ),
        )
    )
    .where(PROJECTS.c.id == bindparam("project_id"))
)
_PROJECT_OF = {
    key: select(model.__table__.c.project_id).where(model.__table__.c.id == bindparam("row_id"))
    for key, model in (("item_id", Item), ("job_id", Job), ("model_id", ModelVersion))
}


class NotAuthenticatedError(LabelAndLearnError):
    http_status = 401


class ForbiddenError(LabelAndLearnError):
    http_status = 403


def requires(action: str) -> Callable[[F], F]:
    """Declare what a view needs: public, authenticated, admin, or a project action."""

    def mark(view: F) -> F:
        view._lnl_action = action  # type: ignore[attr-defined]
        return view

    return mark


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _view_action() -> str:
    view = current_app.view_functions.get(request.endpoint or "")
    action = getattr(view, "_lnl_action", None)
    if action is None and view is not None and hasattr(view, "view_class"):
        method = getattr(view.view_class, request.method.lower(), None)
        action = getattr(method, "_lnl_action", None)
    if action is not None:
        return str(action)
    return "view" if request.method in ("GET", "HEAD", "OPTIONS") else "manage"


def _project_of_request(connection: Connection, view_args: dict[str, Any]) -> int | None:
    if "project_id" in view_args:
        return int(view_args["project_id"])
    for key in _PROJECT_OF:
        if key in view_args:
            project_id = connection.scalar(_PROJECT_OF[key], {"row_id": view_args[key]})
            if project_id is None:
                raise NotFoundError(f"{key.removesuffix('_id')} {view_args[key]} not found")
            return int(project_id)
    return None


def _require_project_access(
    connection: Connection, user_id: int, is_admin: bool, project_id: int, action: str
) -> None:
    """Raise NotFoundError unless the user may do ``action`` in the project.

    The same rule as ``auth.permissions.require_project_access``, read in one statement: the
    project and the user's membership in it.
    """
    row = connection.execute(
        _PROJECT_AND_ROLE, {"project_id": project_id, "user_id": user_id}
    ).first()
    if row is not None and is_admin:
        return
    if row is None or row.role is None or action not in ROLE_ACTIONS[row.role]:
        raise NotFoundError(f"project {project_id} not found")


def check_request_access() -> Any:
    """Run before every request; returns a redirect to the login page where one is due."""
    if request.endpoint in (None, "static") or request.endpoint.startswith("bootstrap."):
        return None
    app_state = state()
    if not app_state.settings.accounts and not is_loopback(request.remote_addr):
        raise ForbiddenError("single-user mode answers only 127.0.0.1; enable accounts")
    action = _view_action()
    if action == PUBLIC:
        return None
    if app_state.settings.accounts and app_state.setup_token is not None:
        if request.path.startswith("/api/"):
            raise NotAuthenticatedError("no admin account exists yet; open /setup first")
        return redirect(url_for("auth.setup"))
    # One pooled connection serves the session user lookup and the membership check, which
    # saves a pool checkout (and its pre-ping round trip on PostgreSQL) per request.
    with app_state.db.engine.connect() as connection:
        g.access_connection = connection
        try:
            return _check_user_access(connection, action)
        finally:
            g.pop("access_connection", None)


def _check_user_access(connection: Connection, action: str) -> Any:
    if not current_user.is_authenticated:
        if request.path.startswith("/api/"):
            raise NotAuthenticatedError("log in or send an API token: Authorization: Bearer …")
        return redirect(url_for("auth.login", next=request.full_path))
    if action == AUTHENTICATED:
        return None
    if action == ADMIN:
        if not current_user.is_admin:
            raise ForbiddenError("only an admin may do this")
        return None
    project_id = _project_of_request(connection, request.view_args or {})
    if project_id is None:
        return None
    _require_project_access(connection, current_user.id, current_user.is_admin, project_id, action)
    return None


def setup_access(app: Flask, csrf: CSRFProtect) -> None:
    """Install the access check and CSRF (skipped for API-token requests, which carry no
    cookie a third-party page could ride on)."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False

    @app.before_request
    def protect() -> Any:
        response = check_request_access()
        if response is not None:
            return response
        token_auth = request.headers.get("Authorization", "").startswith("Bearer ")
        if request.method not in ("GET", "HEAD", "OPTIONS") and not token_auth:
            csrf.protect()
        return None
