"""Roles with accounts enabled: the controls shown to each role, and 403 for a missing role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_helpers import make_project

from labelandlearn.auth import users
from labelandlearn.auth.permissions import set_membership
from labelandlearn.jobs.inprocess import SynchronousRunner
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.web.app import create_app

PASSWORD = "roles password 12"
FORM_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
TAB = re.compile(r'<a class="nav-link[^"]*"\s*(?:aria-current="page")?\s*href="[^"]*">(\w+)</a>')
ALL_TABS = ["Dashboard", "Label", "Import", "Team", "Review", "Members", "Settings"]


@pytest.fixture
def world(sqlite_db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An accounts app with one project, its members of each role, and an outsider."""
    users.create_user(sqlite_db, "admin", PASSWORD, is_admin=True)
    project_id = make_project(sqlite_db, name="tweets")
    roles = ("manager", "annotator", "reviewer")
    user_ids = {role: users.create_user(sqlite_db, role, PASSWORD) for role in roles}
    with sqlite_db.session() as session:
        for role, user_id in user_ids.items():
            set_membership(session, project_id, user_id, role)
    users.create_user(sqlite_db, "outsider", PASSWORD)
    settings = Settings(data_dir=tmp_path, database_url=sqlite_db.url, accounts=True)
    app = create_app(settings, db=sqlite_db, runner=SynchronousRunner(sqlite_db))
    yield {"app": app, "project_id": project_id}


def _login(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    match = FORM_TOKEN.search(client.get("/login").get_data(as_text=True))
    assert match is not None
    response = client.post(
        "/login",
        data={"csrf_token": match.group(1), "username": username, "password": PASSWORD},
    )
    assert response.status_code == 302
    return client


def _tabs(client: FlaskClient, path: str) -> list[str]:
    """Return the titles of the project tabs on the page at ``path``."""
    response = client.get(path)
    assert response.status_code == 200, path
    page = response.get_data(as_text=True)
    start = page.index('id="project-tabs"')
    return TAB.findall(page[start : page.index("</ul>", start)])


def _api_headers(client: FlaskClient) -> dict[str, str]:
    match = META_TOKEN.search(client.get("/").get_data(as_text=True))
    assert match is not None
    return {"X-CSRFToken": match.group(1), "Accept": "application/json"}


@pytest.mark.parametrize("username", ["admin", "manager"])
def test_members_tab_shows_to_managers(world: dict[str, Any], username: str) -> None:
    client = _login(world["app"], username)
    project_id = world["project_id"]
    for path in (
        f"/projects/{project_id}",
        f"/projects/{project_id}/members",
        f"/projects/{project_id}/label",
    ):
        assert _tabs(client, path) == ALL_TABS, path
    members = client.get(f"/projects/{project_id}/members").get_data(as_text=True)
    assert f'aria-current="page"\n       href="/projects/{project_id}/members"' in members


def test_annotator_sees_only_own_tabs(world: dict[str, Any]) -> None:
    client = _login(world["app"], "annotator")
    project_id = world["project_id"]
    for path in (f"/projects/{project_id}", f"/projects/{project_id}/label"):
        assert _tabs(client, path) == ["Dashboard", "Label", "Team"], path


def test_reviewer_sees_review_tab(world: dict[str, Any]) -> None:
    client = _login(world["app"], "reviewer")
    tabs = _tabs(client, f"/projects/{world['project_id']}")
    assert tabs == ["Dashboard", "Label", "Team", "Review"]


def test_annotator_pages_hide_manager_controls(world: dict[str, Any]) -> None:
    client = _login(world["app"], "annotator")
    project_id = world["project_id"]
    import_url = f"/projects/{project_id}/import"

    home = client.get("/").get_data(as_text=True)
    assert "/projects/new" not in home
    assert import_url not in home
    assert f"/projects/{project_id}/label" in home

    label_page = client.get(f"/projects/{project_id}/label").get_data(as_text=True)
    assert 'id="retrain-button"' not in label_page
    assert import_url not in label_page

    dashboard = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert import_url not in dashboard
    assert "export-button" not in dashboard
    assert f"/projects/{project_id}/edit" not in dashboard


def test_manager_pages_show_manager_controls(world: dict[str, Any]) -> None:
    client = _login(world["app"], "manager")
    project_id = world["project_id"]
    import_url = f"/projects/{project_id}/import"

    home = client.get("/").get_data(as_text=True)
    assert "/projects/new" not in home
    assert import_url in home

    label_page = client.get(f"/projects/{project_id}/label").get_data(as_text=True)
    assert 'id="retrain-button"' in label_page

    dashboard = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert import_url in dashboard
    assert "export-button" in dashboard


def test_admin_home_offers_new_project(world: dict[str, Any]) -> None:
    client = _login(world["app"], "admin")
    home = client.get("/").get_data(as_text=True)
    assert 'class="btn btn-primary ms-auto" href="/projects/new"' in home
    assert f"/projects/{world['project_id']}/import" in home


@pytest.mark.parametrize(
    ("path", "needed"),
    [
        ("/projects/{id}/import", "only a manager of project {id} or an admin may"),
        ("/projects/{id}/edit", "only a manager of project {id} or an admin may"),
        ("/projects/{id}/members", "only a manager of project {id} or an admin may"),
        ("/projects/{id}/review", "only a manager or reviewer of project {id} or an admin may"),
    ],
)
def test_annotator_page_forbidden_names_role(world: dict[str, Any], path: str, needed: str) -> None:
    client = _login(world["app"], "annotator")
    project_id = world["project_id"]
    response = client.get(path.format(id=project_id))
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert needed.format(id=project_id) in page
    assert "your role there is annotator" in page
    assert "not found" not in page


def test_annotator_retrain_forbidden_names_role(world: dict[str, Any]) -> None:
    client = _login(world["app"], "annotator")
    project_id = world["project_id"]
    response = client.post(f"/api/v1/projects/{project_id}/train", headers=_api_headers(client))
    assert response.status_code == 403
    message = response.get_json()["error"]["message"]
    assert message == (
        f"only a manager of project {project_id} or an admin may change its settings and "
        "members, import, export or train its models; your role there is annotator"
    )


def test_outsider_still_gets_not_found(world: dict[str, Any]) -> None:
    client = _login(world["app"], "outsider")
    project_id = world["project_id"]
    for path in (f"/projects/{project_id}", f"/projects/{project_id}/import"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert f"project {project_id} not found" in response.get_data(as_text=True)
    train = client.post(f"/api/v1/projects/{project_id}/train", headers=_api_headers(client))
    assert train.status_code == 404


def test_users_page_links_members_pages(world: dict[str, Any]) -> None:
    client = _login(world["app"], "admin")
    page = client.get("/admin/users").get_data(as_text=True)
    assert 'id="membership-note"' in page
    assert f'href="/projects/{world["project_id"]}/members">tweets</a>' in page
