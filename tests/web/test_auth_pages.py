"""Account pages with accounts enabled: first run, login limits, invites, API tokens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from labelandlearn.auth import users
from labelandlearn.jobs.inprocess import SynchronousRunner
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.web.app import create_app

PASSWORD = "pages password 12"
FORM_TOKEN = re.compile(r'name="([\w-]*csrf_token)" type="hidden" value="([^"]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _app(db: Database, tmp_path: Path, **settings: Any) -> Flask:
    config = Settings(data_dir=tmp_path, database_url=db.url, accounts=True, **settings)
    return create_app(config, db=db, runner=SynchronousRunner(db))


def _form_token(client: FlaskClient, path: str, prefix: str = "") -> str:
    """Return the CSRF token of the form whose fields carry ``prefix`` on the page."""
    tokens = dict(FORM_TOKEN.findall(client.get(path).get_data(as_text=True)))
    name = f"{prefix}-csrf_token" if prefix else "csrf_token"
    assert name in tokens, f"no CSRF token {name} on {path}"
    return tokens[name]


def _login(client: FlaskClient, username: str, password: str = PASSWORD) -> int:
    token = _form_token(client, "/login")
    response = client.post(
        "/login", data={"csrf_token": token, "username": username, "password": password}
    )
    return response.status_code


@pytest.fixture
def app_with_admin(sqlite_db: Database, tmp_path: Path) -> Iterator[Flask]:
    users.create_user(sqlite_db, "admin", PASSWORD, is_admin=True)
    yield _app(sqlite_db, tmp_path)


def test_first_run_redirects_to_setup(sqlite_db: Database, tmp_path: Path) -> None:
    app = _app(sqlite_db, tmp_path)
    client = app.test_client()
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/setup")
    assert client.get("/api/v1/projects").status_code == 401


def test_setup_needs_code_then_creates_admin(sqlite_db: Database, tmp_path: Path) -> None:
    app = _app(sqlite_db, tmp_path)
    code = app.extensions["labelandlearn"].setup_token
    client = app.test_client()
    token = _form_token(client, "/setup")
    wrong = client.post(
        "/setup",
        data={"csrf_token": token, "setup_code": "guess", "username": "boss", "password": PASSWORD},
    )
    assert wrong.status_code == 403
    assert not users.has_admin(sqlite_db)
    right = client.post(
        "/setup",
        data={"csrf_token": token, "setup_code": code, "username": "boss", "password": PASSWORD},
    )
    assert right.status_code == 302
    assert users.has_admin(sqlite_db)
    assert client.get("/setup").status_code == 302


def test_login_and_logout(app_with_admin: Flask) -> None:
    client = app_with_admin.test_client()
    assert client.get("/").status_code == 302
    assert _login(client, "admin") == 302
    page = client.get("/")
    assert page.status_code == 200
    token = META_TOKEN.search(page.get_data(as_text=True))
    assert token is not None
    client.post("/logout", data={"csrf_token": token.group(1)})
    assert client.get("/").status_code == 302


def test_login_rate_limited_per_account(app_with_admin: Flask) -> None:
    client = app_with_admin.test_client()
    statuses = [_login(client, "admin", "wrong password!") for _ in range(5)]
    assert statuses == [401] * 5
    assert _login(client, "admin") == 429


def test_invite_link_creates_account(app_with_admin: Flask) -> None:
    admin = app_with_admin.test_client()
    _login(admin, "admin")
    token = _form_token(admin, "/admin/users", "invite")
    page = admin.post(
        "/admin/users",
        data={"invite-csrf_token": token, "invite-hours": "24", "invite-submit": "1"},
    ).get_data(as_text=True)
    link = re.search(r'id="invite-link">http://[^/]+(/invite/[^<]+)<', page)
    assert link is not None
    newcomer = app_with_admin.test_client()
    form = _form_token(newcomer, link.group(1))
    created = newcomer.post(
        link.group(1), data={"csrf_token": form, "username": "newbie", "password": PASSWORD}
    )
    assert created.status_code == 302
    assert _login(app_with_admin.test_client(), "newbie") == 302
    reused = newcomer.post(
        link.group(1), data={"csrf_token": form, "username": "other", "password": PASSWORD}
    )
    assert reused.status_code == 404
    assert newcomer.get(link.group(1)).status_code == 404


def test_api_token_shown_once_and_revocable(app_with_admin: Flask) -> None:
    client = app_with_admin.test_client()
    _login(client, "admin")
    token = _form_token(client, "/account", "token")
    page = client.post(
        "/account",
        data={"token-csrf_token": token, "token-name": "script", "token-submit": "1"},
    ).get_data(as_text=True)
    shown = re.search(r'id="new-token">(lnl_[^<]+)<', page)
    assert shown is not None
    api_token = shown.group(1)
    assert api_token not in client.get("/account").get_data(as_text=True)
    script = app_with_admin.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}
    assert script.get("/api/v1/projects", headers=headers).status_code == 200
    revoke = re.search(
        r'action="(/account/tokens/\d+/revoke)"', client.get("/account").get_data(as_text=True)
    )
    assert revoke is not None
    client.post(revoke.group(1), data={"csrf_token": _form_token(client, "/account")})
    assert script.get("/api/v1/projects", headers=headers).status_code == 401


def test_single_user_mode_rejects_remote_clients(sqlite_db: Database, tmp_path: Path) -> None:
    app = create_app(
        Settings(data_dir=tmp_path, database_url=sqlite_db.url),
        db=sqlite_db,
        runner=SynchronousRunner(sqlite_db),
    )
    client = app.test_client()
    assert client.get("/", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    remote = client.get("/", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert remote.status_code == 403
