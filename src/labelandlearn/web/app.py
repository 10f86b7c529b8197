"""Application factory: settings, database, job runner, security headers, blueprints."""

from __future__ import annotations

import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask_bootstrap import Bootstrap5
from flask_login import LoginManager, UserMixin
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from labelandlearn.auth.users import LOCAL_USERNAME
from labelandlearn.errors import LabelAndLearnError
from labelandlearn.jobs.base import JobRunner
from labelandlearn.settings import Settings, get_settings
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import User
from labelandlearn.web.state import AppState

logger = logging.getLogger(__name__)


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # Bootstrap-Flask's form macros write a few style attributes.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class LoginUser(UserMixin):
    def __init__(self, user_id: int, username: str, is_admin: bool) -> None:
        self.id = user_id
        self.username = username
        self.is_admin = is_admin
        self.via_token = False


def load_secret_key(settings: Settings) -> str:
    """Return the configured secret key, or one stored in the data folder (created once)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.touch(mode=0o600)
    path.write_text(key)
    return key


def ensure_local_user(db: Database) -> int:
    """Return the id of the user that single-user mode answers as, creating it once.

    The local user has no password, so nobody can log in as it over the network.
    """
    with db.session() as session:
        user = session.scalar(select(User).where(User.username == LOCAL_USERNAME))
        if user is None:
            user = User(username=LOCAL_USERNAME, password_hash=None, is_admin=True)
            session.add(user)
            session.flush()
        return user.id


def _make_runner(settings: Settings, db: Database) -> JobRunner:
    if settings.job_runner == "celery":
        from labelandlearn.jobs.celery_runner import CeleryRunner

        return CeleryRunner(db, settings.celery_broker_url)
    from labelandlearn.jobs.base import fail_stale_jobs
    from labelandlearn.jobs.inprocess import InProcessRunner

    # In-process jobs die with the server, so a job still marked running is a leftover.
    fail_stale_jobs(db)
    environment = {
        "LABELANDLEARN_DATA_DIR": str(settings.data_dir),
        "LABELANDLEARN_DATABASE_URL": db.url,
    }
    return InProcessRunner(
        db,
        threads=settings.job_threads,
        isolation=settings.job_isolation,
        environment=environment,
    )


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    runner: JobRunner | None = None,
    config: dict[str, Any] | None = None,
) -> Flask:
    settings = settings or get_settings()
    db = db or Database(settings.resolved_database_url)
    db.upgrade()
    runner = runner or _make_runner(settings, db)

    from labelandlearn.learning.online import ModelCache

    app = Flask(__name__)
    from labelandlearn.web.ids import IdConverter

    # Set before any route is added: rules pick their converters when they are added.
    app.url_map.converters["int"] = IdConverter
    app.config.update(
        SECRET_KEY=load_secret_key(settings),
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        BOOTSTRAP_SERVE_LOCAL=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        API_TITLE="Label and Learn",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
    )
    if config:
        app.config.update(config)

    from labelandlearn.auth.ratelimit import LoginRateLimiter
    from labelandlearn.auth.users import has_admin

    setup_token = None
    if settings.accounts and not has_admin(db):
        setup_token = secrets.token_urlsafe(16)
        # Shown on the console, not in the log, like a first-run code: it lets whoever runs
        # the server create the first admin on the /setup page.
        # The code is printed on a line of its own, so that copying it takes no punctuation.
        print(  # noqa: T201
            "No admin account yet. Open /setup and enter this setup code:\n"
            f"    {setup_token}\n"
            "or run: labelandlearn users create NAME --admin",
            file=sys.stderr,
            flush=True,
        )
    app.extensions["labelandlearn"] = AppState(
        settings=settings,
        db=db,
        runner=runner,
        models=ModelCache(),
        local_user_id=ensure_local_user(db),
        login_limiter=LoginRateLimiter(),
        setup_token=setup_token,
    )

    Bootstrap5(app)
    csrf = CSRFProtect(app)
    _setup_login(app)
    from labelandlearn.web.access import project_actions, setup_access

    setup_access(app, csrf)
    _register_blueprints(app)
    _register_error_handlers(app)
    app.after_request(_security_headers)

    # Jinja globals, unlike context processor values, also reach macros imported without
    # context, such as the project tabs of _project_nav.html.
    app.jinja_env.globals.update(
        accounts_enabled=settings.accounts, project_actions=project_actions
    )

    if settings.embeddings == "background":
        from labelandlearn.learning.project_embeddings import resume_embeddings

        resume_embeddings(db, runner)
    logger.info(
        "app ready: database %s, %s job runner",
        db.engine.url.render_as_string(hide_password=True),
        settings.job_runner,
    )
    return app


def _setup_login(app: Flask) -> None:
    from labelandlearn.auth.users import user_for_api_token
    from labelandlearn.web.access import lookup_session_user

    login_manager = LoginManager(app)
    state: AppState = app.extensions["labelandlearn"]
    # "strong" drops the session when the client's address or browser changes; single-user
    # mode has no login session to protect.
    login_manager.session_protection = "strong" if state.settings.accounts else None

    @login_manager.user_loader
    def load_session_user(user_id: str) -> LoginUser | None:
        state: AppState = app.extensions["labelandlearn"]
        if request.headers.get("Authorization", "").startswith("Bearer "):
            # A request that sends a token is the token's: a session cookie beside it neither
            # adds the cookie user's rights nor lets a bad token pass.
            return None
        if not state.settings.accounts or not user_id.isdigit():
            return None
        # This runs on every request of a logged-in user, so the lookup is a prebuilt Core
        # statement that also reads the access check's project row where it can.
        user = lookup_session_user(int(user_id))
        if user is None:
            return None
        return LoginUser(user.id, user.username, user.is_admin)

    @login_manager.request_loader
    def load_request_user(current: Any) -> LoginUser | None:
        state: AppState = app.extensions["labelandlearn"]
        header = current.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            info = user_for_api_token(state.db, header.removeprefix("Bearer ").strip())
            if info is None:
                return None
            user = LoginUser(info.id, info.username, info.is_admin)
            user.via_token = True
            return user
        if not state.settings.accounts:
            # Single-user mode: every request on the loopback server acts as the local user.
            return LoginUser(state.local_user_id, LOCAL_USERNAME, True)
        return None


def _register_blueprints(app: Flask) -> None:
    from labelandlearn.web.api import register_api
    from labelandlearn.web.auth_pages import bp as auth_bp
    from labelandlearn.web.pages import register_pages

    register_api(app)
    register_pages(app)
    app.register_blueprint(auth_bp)
    from labelandlearn.web.team_pages import bp as team_bp

    app.register_blueprint(team_bp)


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def error_response(
    status: int, message: str, details: dict[str, Any] | None = None
) -> tuple[Response, int]:
    """Return the one JSON error shape of the API: {"error": {status, code, message, ...}}."""
    body: dict[str, Any] = {
        "status": status,
        "code": _status_code_name(status),
        "message": message,
    }
    if details:
        body["details"] = details
    return jsonify({"error": body}), status


def _status_code_name(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "error"


def _register_error_handlers(app: Flask) -> None:
    def render(status: int, message: str, details: dict[str, Any] | None = None) -> Any:
        if _wants_json():
            return error_response(status, message, details)
        return render_template("error.html", status=status, message=message), status

    @app.errorhandler(LabelAndLearnError)
    def domain_error(error: LabelAndLearnError) -> Any:
        response = make_response(render(error.http_status, str(error), error.details))
        if error.http_status == 401:
            # RFC 9110: a 401 names the scheme that the client should use.
            response.headers["WWW-Authenticate"] = 'Bearer realm="labelandlearn"'
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> Any:
        return render(400, f"{error.description} Reload the page and try again.")

    @app.errorhandler(413)
    def too_large(_error: Exception) -> Any:
        limit = app.extensions["labelandlearn"].settings.max_upload_mb
        return render(
            413,
            f"the upload is larger than the limit of {limit} MB; split the file or raise "
            "LABELANDLEARN_MAX_UPLOAD_MB",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        message = error.description or error.name
        data = getattr(error, "data", None)
        if isinstance(data, dict) and data.get("messages"):
            message = f"invalid request: {'; '.join(_field_messages(data['messages']))}"
        response = make_response(render(error.code or 500, str(message)))
        # Keeps the headers the exception carries, such as Allow on a 405.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OverflowError)
    def number_too_large(_error: OverflowError) -> Any:
        # SQLite's driver cannot bind an integer beyond 64 bits, such as an id in a body.
        return render(422, "a number in the request is too large; ids and counts fit in 64 bits")

    @app.errorhandler(RecursionError)
    def nested_too_deeply(_error: RecursionError) -> Any:
        return render(400, "the request body is nested too deeply to read")

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return render(500, "internal error; the server log has the details")


def _field_messages(messages: Any, path: str = "") -> list[str]:
    """Flatten webargs' nested {location: {field: [message]}} into "field: message" lines.

    The location (json, query, form) is left out; list positions show as "labels.0".
    """
    if isinstance(messages, dict):
        lines = []
        for key, value in messages.items():
            inner = "" if not path and key in ("json", "query", "form", "files") else str(key)
            lines.extend(_field_messages(value, f"{path}.{inner}".strip(".") if inner else path))
        return lines
    if isinstance(messages, list) and all(isinstance(item, str) for item in messages):
        if path == "_schema" and "Invalid input type." in messages:
            # marshmallow's words for a body that is not an object (a list, a string).
            return ["the body must be a JSON object with the fields of this endpoint"]
        return [f"{path}: {' '.join(messages)}" if path else " ".join(messages)]
    if isinstance(messages, list):
        return [line for item in messages for line in _field_messages(item, path)]
    return [f"{path}: {messages}" if path else str(messages)]


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response
