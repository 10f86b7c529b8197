"""The two labelling endpoints with accounts: access rules, errors and database round trips.

The access check reads the login user, the project and the user's role in one statement, and
the endpoint continues its session, so each request checks out one pooled connection.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, update

from labelandlearn.auth import users
from labelandlearn.auth.permissions import set_membership
from labelandlearn.jobs.inprocess import SynchronousRunner
from labelandlearn.services.projects import LabelSpec, ProjectSpec, create_project
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, User
from labelandlearn.web.app import create_app

PASSWORD = "labelling password 12"


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path, database_url=db.url, accounts=True)
    admin = users.create_user(db, "admin", PASSWORD, is_admin=True)
    annotator = users.create_user(db, "annotator", PASSWORD)
    other = users.create_user(db, "other", PASSWORD)
    project_id = create_project(
        db,
        ProjectSpec(
            name="tweets",
            labels=[LabelSpec(name=name) for name in ("negative", "useless", "positive")],
            retrain_every=100_000,
        ),
    )
    with db.session() as session:
        session.add_all(
            Item(
                project_id=project_id,
                text=f"tweet {i}",
                text_hash=hashlib.sha1(f"tweet {i}".encode()).hexdigest(),
                position=i,
            )
            for i in range(20)
        )
        set_membership(session, project_id, annotator, "annotator")
    app = create_app(settings, db=db, runner=SynchronousRunner(db))
    yield {
        "app": app,
        "db": db,
        "project_id": project_id,
        "users": {"admin": admin, "annotator": annotator, "other": other},
    }


def _login(world: dict[str, Any], username: str) -> tuple[FlaskClient, dict[str, str]]:
    client = world["app"].test_client()
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
    return client, {"X-CSRFToken": meta.group(1)}


def _next_item(client: FlaskClient, project_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/projects/{project_id}/items/next?limit=1")
    assert response.status_code == 200, response.get_data(as_text=True)
    items = response.get_json()["items"]
    assert len(items) == 1
    item: dict[str, Any] = items[0]
    return item


def _answer(
    client: FlaskClient, headers: dict[str, str], project_id: int, item_id: int, **extra: Any
) -> Any:
    body = {"id": str(uuid.uuid4()), "item_id": item_id, "label": "useless", **extra}
    return client.post(f"/api/v1/projects/{project_id}/answers", json=body, headers=headers)


class _DatabaseCalls:
    """Counts the statements and pool checkouts of the app's engine while installed."""

    def __init__(self, db: Database) -> None:
        self.engine = db.engine
        self.counts: Counter[str] = Counter()

    def _statement(self, *_args: Any) -> None:
        self.counts["statements"] += 1

    def _checkout(self, *_args: Any) -> None:
        self.counts["checkouts"] += 1

    def __enter__(self) -> Counter[str]:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "checkout", self._checkout)
        return self.counts

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "checkout", self._checkout)


def test_labelling_requests_use_one_connection(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "annotator")
    # The first answer runs the retrain check, which reads the project on its own.
    first = _next_item(client, project_id)
    assert _answer(client, headers, project_id, first["id"]).status_code == 201

    with _DatabaseCalls(world["db"]) as next_calls:
        item = _next_item(client, project_id)
    with _DatabaseCalls(world["db"]) as answer_calls:
        response = _answer(client, headers, project_id, item["id"])

    assert response.status_code == 201
    # Next item: user with project access, held items with candidates, lease insert.
    assert next_calls == {"statements": 3, "checkouts": 1}
    # Answer: user with project access, item with current and retried answer, lease
    # update, answer insert, the item's answers, item update.
    assert answer_calls == {"statements": 6, "checkouts": 1}


def test_retried_answer_returns_stored_one(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "annotator")
    item = _next_item(client, project_id)
    answer_id = str(uuid.uuid4())

    first = _answer(client, headers, project_id, item["id"], id=answer_id)
    again = _answer(client, headers, project_id, item["id"], id=answer_id)

    assert first.status_code == 201
    assert first.get_json()["created"] is True
    assert again.status_code == 201
    assert again.get_json()["created"] is False
    assert again.get_json()["label"] == "useless"
    # The stored answer read back from the database keeps its UTC offset.
    assert again.get_json()["created_at"].endswith("+00:00")
    assert again.get_json()["created_at"] == first.get_json()["created_at"]


def test_reused_answer_id_conflicts(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "annotator")
    item = _next_item(client, project_id)
    answer_id = str(uuid.uuid4())
    assert _answer(client, headers, project_id, item["id"], id=answer_id).status_code == 201

    # The same id with another label, or for another item, is not a retry.
    other_label = _answer(client, headers, project_id, item["id"], id=answer_id, label="positive")
    other_item = _answer(client, headers, project_id, 99_999, id=answer_id)

    for response in (other_label, other_item):
        assert response.status_code == 409
        error = response.get_json()["error"]
        assert f"already stores an answer for item {item['id']}" in error["message"]
        assert error["details"]["current"]["label"] == "useless"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"model_version_id": 424_242}, "model_version_id 424242 is not a model version"),
        ({"duration_ms": -100}, "duration_ms"),
        ({"predicted_confidence": -5.5}, "predicted_confidence"),
    ],
)
def test_answer_fields_checked(world: dict[str, Any], extra: dict[str, Any], fragment: str) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "annotator")
    item = _next_item(client, project_id)

    response = _answer(client, headers, project_id, item["id"], **extra)

    assert response.status_code == 422
    assert fragment in response.get_json()["error"]["message"]


def test_item_of_other_annotator_conflicts(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "annotator")
    admin, admin_headers = _login(world, "admin")
    item = _next_item(client, project_id)

    response = _answer(admin, admin_headers, project_id, item["id"])

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"
    assert "Traceback" not in response.get_data(as_text=True)


def test_admin_labels_without_membership(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "admin")
    item = _next_item(client, project_id)
    assert _answer(client, headers, project_id, item["id"]).status_code == 201


def test_non_member_gets_not_found(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "other")
    assert client.get(f"/api/v1/projects/{project_id}/items/next").status_code == 404
    assert _answer(client, headers, project_id, 1).status_code == 404


def test_missing_project_gets_not_found(world: dict[str, Any]) -> None:
    client, headers = _login(world, "admin")
    response = client.get("/api/v1/projects/999999/items/next")
    assert response.status_code == 404
    assert response.get_json()["error"]["message"] == "project 999999 not found"
    assert _answer(client, headers, 999999, 1).status_code == 404


def test_deactivated_user_is_logged_out(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, _headers = _login(world, "annotator")
    with world["db"].session() as session:
        session.execute(
            update(User).where(User.id == world["users"]["annotator"]).values(is_active=False)
        )
    assert client.get(f"/api/v1/projects/{project_id}/items/next").status_code == 401


def test_answer_without_csrf_token_is_rejected(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, _headers = _login(world, "annotator")
    item = _next_item(client, project_id)
    response = _answer(client, {}, project_id, item["id"])
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["error"]["message"]


def test_undo_takes_the_named_answer(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "annotator")
    first = _next_item(client, project_id)
    first_id = str(uuid.uuid4())
    assert _answer(client, headers, project_id, first["id"], id=first_id).status_code == 201
    second = _next_item(client, project_id)
    assert _answer(client, headers, project_id, second["id"]).status_code == 201
    undo = f"/api/v1/projects/{project_id}/answers/undo"

    named = client.post(undo, json={"answer_id": first_id}, headers=headers)
    again = client.post(undo, json={"answer_id": first_id}, headers=headers)
    newest = client.post(undo, headers=headers)

    assert named.status_code == 200
    assert named.get_json()["item"]["id"] == first["id"]
    assert again.status_code == 404
    assert "undone already or never stored" in again.get_json()["error"]["message"]
    assert newest.status_code == 200
    assert newest.get_json()["item"]["id"] == second["id"]


def test_answer_body_not_an_object(world: dict[str, Any]) -> None:
    project_id = world["project_id"]
    client, headers = _login(world, "annotator")
    response = client.post(
        f"/api/v1/projects/{project_id}/answers", json=[{"item_id": 1}], headers=headers
    )
    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert message == (
        "invalid request: the body must be a JSON object with the fields of this endpoint"
    )
