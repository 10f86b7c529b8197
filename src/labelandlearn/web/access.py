"""The one access check of every request: who the user is, and what they may do.

Each view may declare the action it needs with ``@requires(...)``; without it, safe methods
need "view" and others "manage". Ids in the URL (project_id, item_id, job_id, model_id) are
resolved to their project. A user who is neither an admin nor a member of that project gets
404, so the response does not reveal that the project exists. A member whose role lacks the
action gets 403.

The check reads through the request's database session (``request_session``). A view marked
with ``@uses_request_session`` continues that session, so the check and the view share one
pooled connection and one transaction. For other views the session is closed once the check
has passed. When the URL names the project, the login user, the project's settings and labels
and the user's role in it are read in one statement.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Connection, Row, Table, and_, bindparam, select
from sqlalchemy.orm import Session

from labelandlearn.auth.permissions import ACTIONS, ROLE_ACTIONS, ROLES
from labelandlearn.errors import LabelAndLearnError, NotFoundError
from labelandlearn.services.labelling import (
    PROJECT_STATE_COLUMNS,
    PROJECT_STATE_ORDER,
    ProjectState,
    project_state_from_rows,
)
from labelandlearn.storage.models import Item, Job, Label, Membership, ModelVersion, Project, User
from labelandlearn.web.state import state

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC = "public"
AUTHENTICATED = "authenticated"
ADMIN = "admin"

PROJECTS: Table = Project.__table__  # type: ignore[assignment]
MEMBERSHIPS: Table = Membership.__table__  # type: ignore[assignment]
LABELS: Table = Label.__table__  # type: ignore[assignment]
USERS: Table = User.__table__  # type: ignore[assignment]

# Built once, so SQLAlchemy reuses their memoized cache keys on every request.

# The user behind a login session: active and with a password (the local user has none).
_ACTIVE_USER = and_(
    USERS.c.id == bindparam("user_id"),
    USERS.c.is_active.is_(True),
    USERS.c.password_hash.is_not(None),
)
_SESSION_USER = select(USERS.c.id, USERS.c.username, USERS.c.is_admin).where(_ACTIVE_USER)
# The project, the user's role in it (None for a non-member) and its state, one row per label.
_MEMBERSHIP_OF_USER = and_(
    MEMBERSHIPS.c.project_id == PROJECTS.c.id, MEMBERSHIPS.c.user_id == bindparam("user_id")
)
_PROJECT_ACCESS = (
    select(PROJECTS.c.id.label("project_id"), MEMBERSHIPS.c.role, *PROJECT_STATE_COLUMNS)
    .select_from(
        PROJECTS.outerjoin(MEMBERSHIPS, _MEMBERSHIP_OF_USER).outerjoin(
            LABELS, LABELS.c.project_id == PROJECTS.c.id
        )
    )
    .where(PROJECTS.c.id == bindparam("project_id"))
    .order_by(*PROJECT_STATE_ORDER)
)
# The session user and ``_PROJECT_ACCESS`` together; project_id is None when the project
# does not exist.
_SESSION_USER_AND_PROJECT_ACCESS = (
    select(
        USERS.c.id,
        USERS.c.username,
        USERS.c.is_admin,
        PROJECTS.c.id.label("project_id"),
        MEMBERSHIPS.c.role,
        *PROJECT_STATE_COLUMNS,
    )
    .select_from(
        USERS.outerjoin(PROJECTS, PROJECTS.c.id == bindparam("project_id"))
        .outerjoin(MEMBERSHIPS, _MEMBERSHIP_OF_USER)
        .outerjoin(LABELS, LABELS.c.project_id == PROJECTS.c.id)
    )
    .where(_ACTIVE_USER)
    .order_by(*PROJECT_STATE_ORDER)
)
# The user's role in each project they are a member of.
_USER_ROLES = select(MEMBERSHIPS.c.project_id, MEMBERSHIPS.c.role).where(
    MEMBERSHIPS.c.user_id == bindparam("user_id")
)
_PROJECT_OF = {
    key: select(model.__table__.c.project_id).where(model.__table__.c.id == bindparam("row_id"))
    for key, model in (("item_id", Item), ("job_id", Job), ("model_id", ModelVersion))
}


# Description of each project action, for the 403 message of a member whose role lacks it.
ACTION_DESCRIPTIONS = {
    "view": "view it",
    "label": "label its items",
    "review": "review its answers",
    "manage": "change its settings and members, import, export or train its models",
}


class NotAuthenticatedError(LabelAndLearnError):
    http_status = 401


class ForbiddenError(LabelAndLearnError):
    http_status = 403


def role_forbidden_message(project_id: int, role: str, action: str) -> str:
    """Return the 403 message for a member whose ``role`` lacks ``action`` in the project."""
    roles = [name for name in ROLES if action in ROLE_ACTIONS[name]]
    return (
        f"only a {' or '.join(roles)} of project {project_id} or an admin may "
        f"{ACTION_DESCRIPTIONS.get(action, action)}; your role there is {role}"
    )


def requires(action: str) -> Callable[[F], F]:
    """Declare what a view needs: public, authenticated, admin, or a project action."""

    def mark(view: F) -> F:
        view._lnl_action = action  # type: ignore[attr-defined]
        return view

    return mark


def uses_request_session(view: F) -> F:
    """Mark a view that continues the access check's session (see ``request_session``).

    The view commits or rolls back the transaction that the check began, as the labelling
    services do. Until then the session keeps a pooled connection checked out, and on
    PostgreSQL a transaction open, so the view must end it before any slow step.
    """
    view._lnl_request_session = True  # type: ignore[attr-defined]
    return view


def request_session() -> Session:
    """Return the database session of the current request, opening it on first use.

    It is closed when the request ends, which rolls back what was not committed.
    """
    session: Session | None = g.get("db_session")
    if session is None:
        session = state().db.session_factory()
        g.db_session = session
    return session


def close_request_session(_error: BaseException | None = None) -> None:
    """Close the request's session, if one was opened; Flask calls it when a request ends."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


def checked_project() -> ProjectState | None:
    """Return the state of the project that the access check let the user into, if any."""
    rows = g.get("access_project_rows")
    if not rows:
        return None
    project_id: int = rows[0].project_id
    return project_state_from_rows(project_id, rows)


def project_actions(project_id: int) -> frozenset[str]:
    """Return the project actions that the current user may do, for templates to hide controls.

    An admin may do every action, a member those of their role, anyone else none. On a page
    of one project the role comes from the access check's rows. On other pages the user's
    roles in all projects are read once per request.
    """
    if not current_user.is_authenticated:
        return frozenset()
    if current_user.is_admin:
        return frozenset(ACTIONS)
    rows = g.get("access_project_rows")
    if rows and rows[0].project_id == project_id:
        role = rows[0].role
    else:
        roles: dict[int, str] | None = g.get("user_project_roles")
        if roles is None:
            with state().db.engine.connect() as connection:
                result = connection.execute(_USER_ROLES, {"user_id": current_user.id})
                roles = {row.project_id: row.role for row in result}
            g.user_project_roles = roles
        role = roles.get(project_id)
    return ROLE_ACTIONS[role] if role is not None else frozenset()


def lookup_session_user(user_id: int) -> Row[*tuple[Any, ...]] | None:
    """Return (id, username, is_admin) of an active user with a password, or None.

    Flask-Login calls this, through the app's user loader, once per request of a logged-in
    user. While the access check runs, the lookup uses the request's session, and when the
    URL names a project it reads the project access rows in the same statement, for the
    check to use.
    """
    if not g.get("access_check_running"):
        with state().db.engine.connect() as connection:
            return connection.execute(_SESSION_USER, {"user_id": user_id}).first()
    connection = request_session().connection()
    project_id = g.get("access_project_id")
    if project_id is None:
        return connection.execute(_SESSION_USER, {"user_id": user_id}).first()
    rows = connection.execute(
        _SESSION_USER_AND_PROJECT_ACCESS, {"user_id": user_id, "project_id": project_id}
    ).all()
    if not rows:
        return None
    g.access_project_rows = rows if rows[0].project_id is not None else []
    return rows[0]


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _view_attribute(name: str) -> Any:
    """Return an attribute that a decorator set on the view function or MethodView method."""
    view = current_app.view_functions.get(request.endpoint or "")
    value = getattr(view, name, None)
    if value is None and view is not None and hasattr(view, "view_class"):
        method = getattr(view.view_class, request.method.lower(), None)
        value = getattr(method, name, None)
    return value


def _view_action() -> str:
    action = _view_attribute("_lnl_action")
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
    """Raise unless the user may do ``action`` in the project.

    A non-member gets NotFoundError, as from ``auth.permissions.require_project_access``; a
    member whose role lacks the action gets ForbiddenError, which names the roles that have
    it. The project, its state and the user's membership in it are read in one statement.
    For a URL with the project id, the session user lookup may have read them already.
    """
    rows = g.get("access_project_rows")
    if rows is None or (rows and rows[0].project_id != project_id):
        rows = connection.execute(
            _PROJECT_ACCESS, {"project_id": project_id, "user_id": user_id}
        ).all()
        g.access_project_rows = rows
    if rows and is_admin:
        return
    role = rows[0].role if rows else None
    if role is None:
        g.access_project_rows = []
        raise NotFoundError(f"project {project_id} not found")
    if action not in ROLE_ACTIONS[role]:
        g.access_project_rows = []
        raise ForbiddenError(role_forbidden_message(project_id, role, action))


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
    view_args = request.view_args or {}
    g.access_check_running = True
    if action not in (AUTHENTICATED, ADMIN) and "project_id" in view_args:
        g.access_project_id = int(view_args["project_id"])
    try:
        return _check_user_access(request_session().connection(), action)
    finally:
        g.access_check_running = False
        if not _view_attribute("_lnl_request_session"):
            close_request_session()


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
    app.teardown_request(close_request_session)

    @app.before_request
    def protect() -> Any:
        response = check_request_access()
        if response is not None:
            return response
        # Only a request that a valid token authenticated skips CSRF, not any request that
        # merely carries an Authorization header next to a session cookie.
        token_auth = bool(getattr(current_user, "via_token", False))
        if request.method not in ("GET", "HEAD", "OPTIONS") and not token_auth:
            csrf.protect()
        return None
