"""Helpers of the web tests: CSRF tokens, projects, CSV bodies, uploads and imports."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from flask.testing import FlaskClient

from labelandlearn.services.projects import LabelSpec, ProjectSpec, create_project
from labelandlearn.storage.db import Database

XSS = "<img src=x onerror=alert(1)>"
_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """Return the CSRF token of the page at ``path`` (from its csrf-token meta tag)."""
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    match = _META_TOKEN.search(page.get_data(as_text=True))
    assert match is not None, "page has no csrf-token meta tag"
    return match.group(1)


def api_headers(client: FlaskClient) -> dict[str, str]:
    return {"X-CSRFToken": csrf_token(client), "Accept": "application/json"}


def make_project(
    db: Database,
    name: str = "tweets",
    labels: tuple[str, ...] = ("negative", "useless", "positive"),
    model_name: str | None = None,
) -> int:
    spec = ProjectSpec(name=name, labels=[LabelSpec(name=label) for label in labels])
    if model_name is not None:
        spec.model_name = model_name
    return create_project(db, spec)


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def tweet_rows(count: int, labelled: int) -> list[dict[str, Any]]:
    """Return ``count`` distinct rows; the first ``labelled`` carry a -1/0/1 rating."""
    words = {"-1": "terrible scam crash", "0": "random chatter today", "1": "great gains moon"}
    rows = []
    for index in range(count):
        rating = str(index % 3 - 1)
        rows.append(
            {
                "text": f"tweet {index}: {words[rating]} number {index}",
                "rating": rating if index < labelled else "",
                "date": f"2018-01-{index % 28 + 1:02d}",
            }
        )
    return rows


def upload(client: FlaskClient, project_id: int, data: bytes, filename: str = "tweets.csv") -> Any:
    """Upload ``data`` as a raw request body, the way the import page sends it."""
    return client.post(
        f"/api/v1/projects/{project_id}/uploads?filename={filename}",
        data=data,
        headers={**api_headers(client), "Content-Type": "application/octet-stream"},
    )


def import_rows(
    client: FlaskClient, project_id: int, rows: list[dict[str, Any]], **mapping: Any
) -> dict[str, Any]:
    """Upload ``rows`` as CSV and import them with the -1/0/1 rating map; return the job."""
    stored = upload(client, project_id, csv_bytes(rows))
    assert stored.status_code == 201, stored.get_json()
    body = {
        "upload_id": stored.get_json()["upload_id"],
        "text_column": "text",
        "label_column": "rating",
        "label_map": {"-1": "negative", "0": "useless", "1": "positive"},
        **mapping,
    }
    started = client.post(
        f"/api/v1/projects/{project_id}/imports", json=body, headers=api_headers(client)
    )
    assert started.status_code == 202, started.get_json()
    job: dict[str, Any] = client.get(f"/api/v1/jobs/{started.get_json()['job_id']}").get_json()
    return job
