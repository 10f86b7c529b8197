"""Project pages: list, create, edit, delete, validation errors, CSRF and escaping."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from web_fixtures import app, client, database, settings  # noqa: F401
from web_helpers import XSS, api_headers, csrf_token, make_project

from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Label, Project


def project_form(token: str, name: str, labels: list[tuple[str, str]], **extra: Any) -> dict:
    data: dict[str, Any] = {
        "csrf_token": token,
        "name": name,
        "description": "",
        "text_column": "text",
        "id_column": "",
        "label_column": "",
        "model_name": "tfidf-linear",
        "strategy_name": "margin",
        "retrain_every": "50",
    }
    for index, (label, key) in enumerate(labels):
        data[f"labels-{index}-id"] = ""
        data[f"labels-{index}-name"] = label
        data[f"labels-{index}-key"] = key
        data[f"labels-{index}-color"] = "#112233"
    data.update(extra)
    return data


def count_projects(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Project)) or 0


def test_index_without_projects(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "No projects yet." in page.get_data(as_text=True)


def test_create_form_describes_each_strategy(client: FlaskClient) -> None:
    html = client.get("/projects/new").get_data(as_text=True)
    assert ">margin: Items where the model&#39;s two most likely labels are closest.<" in html
    assert ">diverse-margin: Uncertain items that differ from each other" in html


def test_create_form_saves_project(client: FlaskClient, database: Database) -> None:
    token = csrf_token(client, "/projects/new")
    form = project_form(token, "Tweets", [("negative", "n"), ("useless", ""), ("positive", "p")])

    response = client.post("/projects/new", data=form)

    assert response.status_code == 302
    with database.session() as session:
        project = session.scalar(select(Project).where(Project.name == "Tweets"))
        assert project is not None
        assert [label.name for label in project.labels] == ["negative", "useless", "positive"]
        assert [label.key for label in project.labels] == ["n", "1", "p"]
        project_id = project.id
    assert response.headers["Location"].endswith(f"/projects/{project_id}/import")


def test_create_form_ignores_blank_label_rows(client: FlaskClient, database: Database) -> None:
    token = csrf_token(client, "/projects/new")
    form = project_form(token, "Blank rows", [("yes", ""), ("", ""), ("no", "")])

    assert client.post("/projects/new", data=form).status_code == 302
    with database.session() as session:
        project = session.scalar(select(Project).where(Project.name == "Blank rows"))
        assert project is not None
        assert [label.name for label in project.labels] == ["yes", "no"]


def test_create_form_shows_duplicate_label_error(client: FlaskClient, database: Database) -> None:
    token = csrf_token(client, "/projects/new")
    form = project_form(token, "Dupes", [("spam", ""), ("Spam", "")])

    response = client.post("/projects/new", data=form)

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="form-error"' in html
    assert "used twice" in html
    assert count_projects(database) == 0


def test_create_form_rejects_one_label(client: FlaskClient, database: Database) -> None:
    token = csrf_token(client, "/projects/new")
    response = client.post("/projects/new", data=project_form(token, "One", [("only", "")]))

    assert response.status_code == 200
    assert "needs 2 to 50 labels, got 1" in response.get_data(as_text=True)
    assert count_projects(database) == 0


def test_create_form_rejects_reserved_key(client: FlaskClient, database: Database) -> None:
    token = csrf_token(client, "/projects/new")
    form = project_form(token, "Keys", [("a", "?"), ("b", "")])

    response = client.post("/projects/new", data=form)

    assert "taken by the labelling screen" in response.get_data(as_text=True)
    assert count_projects(database) == 0


def test_create_form_rejects_empty_name(client: FlaskClient, database: Database) -> None:
    token = csrf_token(client, "/projects/new")
    response = client.post("/projects/new", data=project_form(token, "", [("a", ""), ("b", "")]))

    assert response.status_code == 200
    assert 'id="field-errors"' in response.get_data(as_text=True)
    assert count_projects(database) == 0


def test_create_form_without_csrf_is_rejected(client: FlaskClient, database: Database) -> None:
    form = project_form("", "No token", [("a", ""), ("b", "")])
    del form["csrf_token"]

    response = client.post("/projects/new", data=form)

    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert count_projects(database) == 0


def test_api_post_without_csrf_header_is_rejected(client: FlaskClient, database: Database) -> None:
    body = {"name": "api", "labels": [{"name": "a"}, {"name": "b"}]}

    response = client.post("/api/v1/projects", json=body)

    assert response.status_code == 400
    assert response.get_json()["error"]["status"] == 400
    assert count_projects(database) == 0


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("retrain_every", "retrain interval must be between 1 and 100000 answers, got 0"),
        ("overlap", "overlap must be between 1 and 50 annotators, got 0"),
        ("lease_seconds", "lease time must be between 10 seconds and 7 days"),
    ],
)
def test_api_zero_setting_rejected(
    client: FlaskClient, database: Database, field: str, message: str
) -> None:
    body = {"name": "api", "labels": [{"name": "a"}, {"name": "b"}], field: 0}

    response = client.post("/api/v1/projects", json=body, headers=api_headers(client))

    assert response.status_code == 422
    assert message in response.get_json()["error"]["message"]
    assert count_projects(database) == 0


def test_edit_form_shows_and_saves(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, "Edit me", ("good", "bad"))
    page = client.get(f"/projects/{project_id}/edit")
    assert page.status_code == 200
    assert 'value="Edit me"' in page.get_data(as_text=True)
    with database.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        label_ids = [label.id for label in project.labels]

    form = project_form(csrf_token(client), "Edited", [("great", "g"), ("bad", "b"), ("meh", "")])
    form["labels-0-id"] = str(label_ids[0])
    form["labels-1-id"] = str(label_ids[1])
    response = client.post(f"/projects/{project_id}/edit", data=form)

    assert response.status_code == 302
    with database.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        assert project.name == "Edited"
        assert [(label.id, label.name) for label in project.labels][:2] == [
            (label_ids[0], "great"),
            (label_ids[1], "bad"),
        ]
        assert project.labels[2].name == "meh"


def test_edit_form_error_keeps_old_settings(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, "Keep", ("a", "b"))
    form = project_form(csrf_token(client), "Keep", [("a", "x"), ("b", "x")])

    response = client.post(f"/projects/{project_id}/edit", data=form)

    assert response.status_code == 200
    assert "already the key of label" in response.get_data(as_text=True)
    with database.session() as session:
        keys = session.scalars(select(Label.key).where(Label.project_id == project_id)).all()
    assert sorted(keys) == ["1", "2"]


def test_delete_asks_then_deletes(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, "Doomed")
    page = client.get(f"/projects/{project_id}/delete")
    assert page.status_code == 200
    assert "cannot be undone" in page.get_data(as_text=True)
    assert count_projects(database) == 1

    response = client.post(
        f"/projects/{project_id}/delete", data={"csrf_token": csrf_token(client)}
    )

    assert response.status_code == 302
    assert count_projects(database) == 0


def test_names_are_escaped_on_every_page(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database, f"p {XSS}", (f"l {XSS}", "plain"))
    paths = [
        "/",
        f"/projects/{project_id}",
        f"/projects/{project_id}/label",
        f"/projects/{project_id}/import",
        f"/projects/{project_id}/edit",
        f"/projects/{project_id}/delete",
    ]
    for path in paths:
        html = client.get(path).get_data(as_text=True)
        assert XSS not in html, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, path


def test_pages_send_csp_without_inline_script(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    for path in [
        "/",
        f"/projects/{project_id}",
        f"/projects/{project_id}/label",
        f"/projects/{project_id}/import",
        "/projects/new",
    ]:
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
        html = response.get_data(as_text=True)
        assert "<script>" not in html, path
        assert " on" + "click=" not in html, path


def test_missing_project_pages_are_404(client: FlaskClient) -> None:
    for path in [
        "/projects/999",
        "/projects/999/label",
        "/projects/999/import",
        "/projects/999/edit",
        "/projects/999/delete",
        "/projects/999/plots/learning-curve.svg",
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "project 999 not found" in response.get_data(as_text=True), path


def test_api_invalid_fields_named_plainly(client: FlaskClient, database: Database) -> None:
    body = {"name": "api", "labels": [{"key": "x"}, {"name": "b"}], "unknown": 1}

    response = client.post("/api/v1/projects", json=body, headers=api_headers(client))

    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert "unknown: Unknown field." in message
    assert "labels.0.name: Missing data for required field." in message
    assert "{" not in message


def test_openapi_error_schema_matches_bodies(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").get_json()
    error = spec["components"]["schemas"]["Error"]
    detail = spec["components"]["schemas"]["ErrorDetail"]

    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorDetail"
    assert detail["properties"]["status"]["type"] == "integer"
    assert detail["properties"]["code"]["type"] == "string"
    body = client.get("/api/v1/projects/999").get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) <= set(detail["properties"])
