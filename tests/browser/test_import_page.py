"""The import page in Chromium: the label value map."""

from __future__ import annotations

import csv
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser_fixtures import (  # noqa: F401 (browser and live_server are fixtures)
    LiveServer,
    browser,
    live_server,
    watch,
)
from sqlalchemy import select

from labelandlearn.services.projects import LabelSpec, ProjectSpec, create_project
from labelandlearn.storage.models import Item

pytestmark = pytest.mark.browser

ROWS = 12
RATINGS = ("1", "2", "3")
TIMEOUT_MS = 30_000


def ratings_csv(target: Path) -> Path:
    """Write rows whose rating column contains numbers that are not label names."""
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "rating"])
        for index in range(ROWS):
            writer.writerow([f"review number {index}", RATINGS[index % len(RATINGS)]])
    return target


def api_get(server: LiveServer, path: str) -> Any:
    with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as response:  # noqa: S310
        return json.load(response)


def test_values_mapped_to_no_label_import_unlabelled(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    project_id = create_project(
        live_server.db,
        ProjectSpec(name="reviews", labels=[LabelSpec(name="good"), LabelSpec(name="bad")]),
    )
    page = browser.new_page()
    events = watch(page)
    page.goto(f"{live_server.url}/projects/{project_id}/import")
    page.set_input_files("#file-input", str(ratings_csv(tmp_path / "ratings.csv")))
    page.click("#upload-button")
    page.wait_for_selector("#step-map:not(.d-none)", timeout=TIMEOUT_MS)

    page.select_option("#label-column", "rating")
    for value in RATINGS:
        page.select_option(f'#label-map-table select[data-value="{value}"]', "")
    page.click("#import-button")
    page.wait_for_selector("#import-report:not(.d-none)", timeout=TIMEOUT_MS)

    summary = page.text_content("#import-summary") or ""
    assert summary == f"Imported {ROWS} of {ROWS} rows from ratings.csv."
    assert page.is_hidden("#row-errors-box")
    progress = api_get(live_server, f"/api/v1/projects/{project_id}/progress")["progress"]
    assert progress["total"] == ROWS
    assert progress["labelled"] == 0
    with live_server.db.session() as session:
        metas = list(session.scalars(select(Item.meta).where(Item.project_id == project_id)))
    assert sorted(meta["rating"] for meta in metas) == sorted(RATINGS * (ROWS // len(RATINGS)))
    assert events.errors == []
