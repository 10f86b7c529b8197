"""Access matrix: a user gets 404 for every endpoint of a project they are not a member of,
and a member gets 403 for every endpoint that their role does not allow.

The endpoints are read from the application's URL map, so a new endpoint is covered without
editing this file; each is called with the ids of another project, or of the member's own.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from labelandlearn.auth import users
from labelandlearn.auth.permissions import ROLE_ACTIONS, set_membership
from labelandlearn.jobs.inprocess import SynchronousRunner
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Base, Item, Job, Label, ModelVersion, Project
from labelandlearn.web.app import create_app

PASSWORD = "matrix password 12"
ID_ARGS = ("project_id", "item_id", "job_id", "model_id")


def _project(db: Database, name: str) -> dict[str, Any]:
    with db.session() as session:
        project = Project(
            name=name,
            labels=[Label(name="a", key="1", position=0), Label(name="b", key="2", position=1)],
        )
        session.add(project)
        session.flush()
        item = Item(
            project_id=project.id,
            text=f"{name} text",
            text_hash=hashlib.sha1(name.encode()).hexdigest(),
            position=0,
        )
        model = ModelVersion(
            project_id=project.id, version=1, model_name="tfidf-linear", weights=b"x"
        )
        job = Job(project_id=project.id, kind="train", status="done")
        session.add_all([item, model, job])
        session.flush()
        return {
            "project_id": project.id,
            "item_id": item.id,
            "job_id": job.id,
            "model_id": model.id,
        }


@pytest.fixture
def world(sqlite_db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path, database_url=sqlite_db.url, accounts=True)
    users.create_user(sqlite_db, "admin", PASSWORD, is_admin=True)
    member = users.create_user(sqlite_db, "member", PASSWORD)
    annotator = users.create_user(sqlite_db, "annotator", PASSWORD)
    own, other = _project(sqlite_db, "own"), _project(sqlite_db, "other")
    with sqlite_db.session() as session:
        set_membership(session, own["project_id"], member, "manager")
        set_membership(session, own["project_id"], annotator, "annotator")
    app = create_app(settings, db=sqlite_db, runner=SynchronousRunner(sqlite_db))
    yield {"app": app, "db": sqlite_db, "own": own, "other": other}


def _login(app: Flask, username: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token is not None
    response = client.post(
        "/login",
        data={"csrf_token": token.group(1), "username": username, "password": PASSWORD},
    )
    assert response.status_code in (302, 303)
    account = client.get("/account").get_data(as_text=True)
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', account)
    assert meta is not None
    return client, meta.group(1)


def _scoped_rules(app: Flask) -> list[tuple[str, str, str]]:
    rules = []
    for rule in app.url_map.iter_rules():
        if not set(rule.arguments) & set(ID_ARGS):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            rules.append((rule.endpoint, rule.rule, method))
    return rules


def _required_action(app: Flask, endpoint: str, method: str) -> str:
    """Return the action that the access check requires of a request to ``endpoint``."""
    view = app.view_functions[endpoint]
    action = getattr(view, "_lnl_action", None)
    if action is None and hasattr(view, "view_class"):
        action = getattr(getattr(view.view_class, method.lower(), None), "_lnl_action", None)
    if action is not None:
        return str(action)
    return "view" if method == "GET" else "manage"


def _url(rule: str, ids: dict[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name in ids:
            return str(ids[name])
        if name == "user_id":
            return "1"
        return "1"

    return re.sub(r"<(?:(\w+):)?(\w+)>", fill, rule)


def _row_counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {
            table.name: connection.execute(
                sa.select(sa.func.count()).select_from(table)
            ).scalar_one()
            for table in Base.metadata.sorted_tables
        }


def test_matrix_covers_every_area(world: dict[str, Any]) -> None:
    endpoints = {endpoint for endpoint, _, _ in _scoped_rules(world["app"])}
    assert len(endpoints) >= 10


def test_denies_every_endpoint_of_other_project(world: dict[str, Any]) -> None:
    client, csrf = _login(world["app"], "member")
    before = _row_counts(world["db"])
    allowed = []
    for endpoint, rule, method in _scoped_rules(world["app"]):
        url = _url(rule, world["other"])
        response = client.open(
            url,
            method=method,
            json={"id": str(uuid.uuid4()), "item_id": world["other"]["item_id"], "label": "a"},
            headers={"X-CSRFToken": csrf},
        )
        if response.status_code != 404:
            allowed.append(f"{method} {url} ({endpoint}) -> {response.status_code}")
    assert allowed == []
    assert _row_counts(world["db"]) == before


def test_denies_annotator_manage_endpoints_with_403(world: dict[str, Any]) -> None:
    client, csrf = _login(world["app"], "annotator")
    own = world["own"]
    before = _row_counts(world["db"])
    checked = []
    wrong = []
    for endpoint, rule, method in _scoped_rules(world["app"]):
        action = _required_action(world["app"], endpoint, method)
        if action in ROLE_ACTIONS["annotator"]:
            continue
        url = _url(rule, own)
        response = client.open(
            url,
            method=method,
            json={"id": str(uuid.uuid4()), "item_id": own["item_id"], "label": "a"},
            headers={"X-CSRFToken": csrf, "Accept": "application/json"},
        )
        checked.append(endpoint)
        body = response.get_data(as_text=True)
        if response.status_code != 403 or "your role there is annotator" not in body:
            wrong.append(f"{method} {url} ({endpoint}) -> {response.status_code}")
    assert wrong == []
    assert {"imports.upload_page", "api_labelling.train", "auth.members"} <= set(checked)
    assert _row_counts(world["db"]) == before


def test_allows_annotator_view_and_label_endpoints(world: dict[str, Any]) -> None:
    client, _ = _login(world["app"], "annotator")
    own = world["own"]
    checked = []
    failures = []
    for endpoint, rule, method in _scoped_rules(world["app"]):
        action = _required_action(world["app"], endpoint, method)
        if method != "GET" or action not in ROLE_ACTIONS["annotator"]:
            continue
        url = _url(rule, own)
        response = client.get(url)
        checked.append(endpoint)
        project_missing = f"project {own['project_id']} not found"
        if response.status_code == 403 or project_missing in response.get_data(as_text=True):
            failures.append(f"GET {url} ({endpoint}) -> {response.status_code}")
    assert failures == []
    assert {"labelling.label_page", "api_labelling.next_items", "dashboard.show"} <= set(checked)


def test_allows_member_to_read_own_project(world: dict[str, Any]) -> None:
    client, _ = _login(world["app"], "member")
    own = world["own"]
    assert client.get(f"/api/v1/projects/{own['project_id']}").status_code == 200
    assert client.get(f"/api/v1/jobs/{own['job_id']}").status_code == 200
    listed = client.get("/api/v1/projects").get_json()["projects"]
    assert [project["name"] for project in listed] == ["own"]


def test_allows_member_to_label_own_project(world: dict[str, Any]) -> None:
    client, csrf = _login(world["app"], "member")
    own = world["own"]
    items = client.get(f"/api/v1/projects/{own['project_id']}/items/next").get_json()["items"]
    assert [item["id"] for item in items] == [own["item_id"]]
    response = client.post(
        f"/api/v1/projects/{own['project_id']}/answers",
        json={"id": str(uuid.uuid4()), "item_id": own["item_id"], "label": "a"},
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 201


def test_denies_anonymous_api_request(world: dict[str, Any]) -> None:
    client = world["app"].test_client()
    response = client.get(f"/api/v1/projects/{world['own']['project_id']}")
    assert response.status_code == 401
    assert response.get_json()["error"]["status"] == 401


def test_denies_api_post_without_csrf(world: dict[str, Any]) -> None:
    client, _ = _login(world["app"], "member")
    own = world["own"]
    response = client.post(
        f"/api/v1/projects/{own['project_id']}/answers",
        json={"id": str(uuid.uuid4()), "item_id": own["item_id"], "label": "a"},
    )
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["error"]["message"]


def test_allows_api_token_without_csrf(world: dict[str, Any]) -> None:
    with world["db"].session() as session:
        member_id = users.find_user(session, "member").id
    token = users.create_api_token(world["db"], member_id, "script")
    client = world["app"].test_client()
    own = world["own"]
    response = client.post(
        f"/api/v1/projects/{own['project_id']}/answers",
        json={"id": str(uuid.uuid4()), "item_id": own["item_id"], "label": "b"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201
    assert (
        client.get(
            f"/api/v1/projects/{world['other']['project_id']}",
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
        == 404
    )


def test_allows_next_items_to_exclude_prefetched(world: dict[str, Any]) -> None:
    client, _ = _login(world["app"], "member")
    own = world["own"]
    url = f"/api/v1/projects/{own['project_id']}/items/next"
    assert [item["id"] for item in client.get(url).get_json()["items"]] == [own["item_id"]]
    excluded = client.get(f"{url}?exclude={own['item_id']}").get_json()["items"]
    assert excluded == []
    bad = client.get(f"{url}?exclude=1,x")
    assert bad.status_code == 422
    assert "exclude" in bad.get_json()["error"]["message"]


def test_denies_cookie_with_junk_token(world: dict[str, Any]) -> None:
    """A session cookie beside a bad token neither skips CSRF nor lends its rights."""
    client, _ = _login(world["app"], "admin")
    own = world["own"]
    headers = {"Authorization": "Bearer junk", "Accept": "application/json"}

    created = client.post("/api/v1/projects", json={"name": "x", "labels": ["a", "b"]},
                          headers=headers)
    deleted = client.delete(f"/api/v1/projects/{own['project_id']}", headers=headers)

    assert created.status_code == 401
    assert deleted.status_code == 401
    assert client.get(f"/api/v1/projects/{own['project_id']}").status_code == 200


def test_token_decides_beside_cookie(world: dict[str, Any]) -> None:
    with world["db"].session() as session:
        annotator_id = users.find_user(session, "annotator").id
    token = users.create_api_token(world["db"], annotator_id, "script")
    client, _ = _login(world["app"], "admin")
    own = world["own"]

    response = client.delete(
        f"/api/v1/projects/{own['project_id']}", headers={"Authorization": f"Bearer {token}"}
    )

    # The annotator's token acts as the annotator, not as the admin of the cookie.
    assert response.status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/99999999999999999999",
        "/api/v1/projects/{project_id}/models/99999999999999999999",
        "/api/v1/jobs/99999999999999999999",
    ],
)
def test_denies_ids_beyond_64_bits_with_404(world: dict[str, Any], path: str) -> None:
    client, _ = _login(world["app"], "admin")

    response = client.get(path.format(**world["own"]), headers={"Accept": "application/json"})

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("query", "status"),
    [("exclude=%C2%B2", 422), ("exclude=%EF%BC%91", 422), ("exclude=99999999999999999999", 422)],
)
def test_denies_odd_digits_in_id_lists(world: dict[str, Any], query: str, status: int) -> None:
    client, _ = _login(world["app"], "member")
    url = f"/api/v1/projects/{world['own']['project_id']}/items/next?{query}"

    response = client.get(url)

    assert response.status_code == status
    assert "exclude must list item ids" in response.get_json()["error"]["message"]


def test_denies_body_numbers_beyond_64_bits(world: dict[str, Any]) -> None:
    client, csrf = _login(world["app"], "member")
    own = world["own"]
    body = {"id": str(uuid.uuid4()), "item_id": 2**70, "label": "b"}

    response = client.post(
        f"/api/v1/projects/{own['project_id']}/answers",
        json=body,
        headers={"X-CSRFToken": csrf, "Accept": "application/json"},
    )

    assert response.status_code in (404, 422)
    assert "internal error" not in response.get_json()["error"]["message"]


def test_denies_deeply_nested_json(world: dict[str, Any]) -> None:
    client, csrf = _login(world["app"], "admin")

    response = client.post(
        "/api/v1/projects",
        data="[" * 100_000 + "]" * 100_000,
        headers={"X-CSRFToken": csrf, "Content-Type": "application/json",
                 "Accept": "application/json"},
    )

    assert response.status_code == 400
    assert "nested too deeply" in response.get_json()["error"]["message"]


def test_error_responses_keep_protocol_headers(world: dict[str, Any]) -> None:
    client = world["app"].test_client()
    headers = {"Accept": "application/json"}

    with world["db"].session() as session:
        admin_id = users.find_user(session, "admin").id
    token = users.create_api_token(world["db"], admin_id, "script")

    anonymous = client.get("/api/v1/projects", headers=headers)
    wrong_method = client.put(
        "/api/v1/projects", headers={**headers, "Authorization": f"Bearer {token}"}
    )

    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert wrong_method.get_json()["error"]["status"] == 405
