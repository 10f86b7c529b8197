"""Upload and import endpoints: detection, preview, size limit, bad files, the import job."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import func, select
from web_fixtures import app, client, database, settings  # noqa: F401
from web_helpers import XSS, api_headers, csv_bytes, import_rows, make_project, tweet_rows, upload

from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Job


def count_items(database: Database, project_id: int, labelled: bool | None = None) -> int:
    query = select(func.count()).select_from(Item).where(Item.project_id == project_id)
    if labelled is not None:
        query = query.where(Item.label_id.is_not(None) if labelled else Item.label_id.is_(None))
    with database.session() as session:
        return session.scalar(query) or 0


def uploaded_files(settings: Settings) -> list[Path]:
    root = settings.data_dir / "uploads"
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_upload_describes_csv(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    response = upload(client, project_id, csv_bytes(tweet_rows(60, labelled=30)))

    assert response.status_code == 201
    body = response.get_json()
    assert body["format"] == "csv"
    assert body["encoding"] in ("utf-8", "utf_8")
    assert body["columns"] == ["text", "rating", "date"]
    assert len(body["preview"]) == 10
    assert body["preview"][0]["text"].startswith("tweet 0")
    assert body["values"]["rating"] == ["-1", "0", "1"]
    assert body["values"]["text"] is None


def test_upload_accepts_multipart(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    data = {"file": (__import__("io").BytesIO(b"text;id\nhello;007\nworld;008\n"), "x.csv")}

    response = client.post(
        f"/api/v1/projects/{project_id}/uploads",
        data=data,
        headers=api_headers(client),
        content_type="multipart/form-data",
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body["delimiter"] == ";"
    assert body["preview"][0] == {"text": "hello", "id": "007"}


def test_upload_over_limit_is_413(
    client: FlaskClient, database: Database, settings: Settings
) -> None:
    project_id = make_project(database)
    too_big = b"text\n" + b"x" * (settings.max_upload_bytes + 10)

    response = upload(client, project_id, too_big)

    assert response.status_code == 413
    message = response.get_json()["error"]["message"]
    assert "larger than the limit of 1 MB" in message
    assert uploaded_files(settings) == []


def test_upload_of_empty_file_is_rejected(
    client: FlaskClient, database: Database, settings: Settings
) -> None:
    project_id = make_project(database)

    response = upload(client, project_id, b"", "empty.csv")

    assert response.status_code == 422
    assert "empty.csv is empty" in response.get_json()["error"]["message"]
    assert uploaded_files(settings) == []


def test_upload_of_binary_file_is_rejected(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    response = upload(client, project_id, bytes(range(256)) * 40, "data.csv")

    assert response.status_code == 422
    assert "binary" in response.get_json()["error"]["message"]


def test_upload_without_csrf_is_rejected(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    response = client.post(
        f"/api/v1/projects/{project_id}/uploads?filename=a.csv",
        data=b"text\nhello\n",
        headers={"Content-Type": "application/octet-stream"},
    )

    assert response.status_code == 400


def test_upload_to_missing_project_is_404(client: FlaskClient) -> None:
    response = upload(client, 999, b"text\nhello\n")

    assert response.status_code == 404


def test_import_job_maps_labels_and_reports(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    rows = tweet_rows(30, labelled=15)
    rows.append(dict(rows[0]))
    rows.append({"text": "", "rating": "1", "date": "x"})
    rows.append({"text": "bad label", "rating": "7", "date": "x"})

    job = import_rows(client, project_id, rows)

    assert job["status"] == "done", job
    report = job["result"]
    assert report["rows_read"] == 33
    assert report["rows_imported"] == 30
    assert report["rows_labelled"] == 15
    assert report["duplicates_skipped"] == 1
    assert [error["line"] for error in report["row_errors"]] == [33, 34]
    assert count_items(database, project_id) == 30
    assert count_items(database, project_id, labelled=True) == 15


def test_import_no_label_values_unlabelled(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    rows = tweet_rows(9, labelled=9)
    # The import page sends "(no label)" as an empty name.
    label_map = {"-1": "negative", "0": "", "1": ""}

    job = import_rows(client, project_id, rows, label_map=label_map)

    assert job["status"] == "done", job
    assert job["result"]["rows_with_errors"] == 0
    assert job["result"]["rows_imported"] == 9
    assert job["result"]["rows_labelled"] == 3
    assert count_items(database, project_id, labelled=True) == 3


def test_import_keeps_duplicates_on_request(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    rows = tweet_rows(5, labelled=0)

    job = import_rows(client, project_id, rows + rows[:2], duplicates="keep")

    assert job["result"]["duplicates_kept"] == 2
    assert count_items(database, project_id) == 7


def test_import_with_missing_column_lists_columns(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    stored = upload(client, project_id, csv_bytes(tweet_rows(3, labelled=0))).get_json()

    response = client.post(
        f"/api/v1/projects/{project_id}/imports",
        json={"upload_id": stored["upload_id"], "text_column": "body"},
        headers=api_headers(client),
    )

    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert "text column 'body' not found" in message
    assert "text, rating, date" in message
    assert count_items(database, project_id) == 0


def test_import_with_unknown_upload_is_404(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    for upload_id in ("0" * 32, "../../etc"):
        response = client.post(
            f"/api/v1/projects/{project_id}/imports",
            json={"upload_id": upload_id, "text_column": "text"},
            headers=api_headers(client),
        )
        assert response.status_code == 404, upload_id


def test_imported_text_comes_back_as_json(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)
    import_rows(client, project_id, [{"text": XSS, "rating": "", "date": "<svg onload=x>"}])

    response = client.get(f"/api/v1/projects/{project_id}/items/next?limit=5")

    assert response.mimetype == "application/json"
    item = response.get_json()["items"][0]
    assert item["text"] == XSS
    assert item["meta"]["date"] == "<svg onload=x>"


def test_import_page_renders(client: FlaskClient, database: Database) -> None:
    project_id = make_project(database)

    page = client.get(f"/projects/{project_id}/import")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-max-upload-mb="1"' in html
    assert "js/import.js" in html


def test_upload_of_deeply_nested_json_is_deleted(
    client: FlaskClient, database: Database, settings: Settings
) -> None:
    project_id = make_project(database)

    response = upload(client, project_id, b"[" * 100_000 + b"]" * 100_000, "deep.json")

    assert response.status_code == 422
    assert "nests its JSON too deeply" in response.get_json()["error"]["message"]
    folder = settings.data_dir / "uploads" / str(project_id)
    assert not folder.exists() or not any(folder.iterdir())


def test_deleting_project_removes_its_files(
    client: FlaskClient, database: Database, settings: Settings, tmp_path: Path
) -> None:
    project_id = make_project(database)
    assert upload(client, project_id, csv_bytes(tweet_rows(3, labelled=0))).status_code == 201
    exported = settings.data_dir / "exports" / "tweets.csv"
    exported.parent.mkdir(parents=True, exist_ok=True)
    exported.write_text("text\n", encoding="utf-8")
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("keep\n", encoding="utf-8")
    with database.session() as session:
        for path in (exported, outside):
            session.add(Job(project_id=project_id, kind="export", status="done",
                            result={"path": str(path)}))

    response = client.delete(f"/api/v1/projects/{project_id}", headers=api_headers(client))

    assert response.status_code == 204
    assert not (settings.data_dir / "uploads" / str(project_id)).exists()
    assert not exported.exists()
    # Only files in the data folder's exports go, whatever a job row names.
    assert outside.exists()
