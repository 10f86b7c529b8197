"""End to end in Chromium: create a project, upload, label by keyboard, undo, retrain, export."""

from __future__ import annotations

import csv
import io
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser_fixtures import (  # noqa: F401 (browser and live_server are fixtures)
    DATASETS,
    LiveServer,
    browser,
    live_server,
    screenshot,
    watch,
)

from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.services.projects import LabelSpec, ProjectSpec, create_project

pytestmark = pytest.mark.browser

LABELS = ("negative", "useless", "positive")
LABELLED_ROWS = 90
UNLABELLED_ROWS = 60
ANSWERS = 30
TIMEOUT_MS = 30_000


def tweets_csv(target: Path) -> Path:
    """Write a CSV of real Ethereum tweets (generated ones when the dataset is absent).

    The first LABELLED_ROWS rows keep their -1/0/1 rating, the others have none.
    """
    source = DATASETS / "ethereum-tweets" / "labelled.csv"
    rows: list[dict[str, str]] = []
    if source.exists():
        with source.open(encoding="utf-8", newline="") as handle:
            seen: set[str] = set()
            for row in csv.DictReader(handle):
                if row["text"] not in seen:
                    seen.add(row["text"])
                    rows.append({"text": row["text"], "rating": row["rating"], "date": row["date"]})
                if len(rows) == LABELLED_ROWS + UNLABELLED_ROWS:
                    break
    else:
        words = {"-1": "crash scam dump", "0": "meetup chatter", "1": "moon gains rally"}
        for index in range(LABELLED_ROWS + UNLABELLED_ROWS):
            rating = str(index % 3 - 1)
            rows.append(
                {
                    "text": f"ethereum {words[rating]} {index}",
                    "rating": rating,
                    "date": f"2018-01-{index % 28 + 1:02d}",
                }
            )
    for row in rows[LABELLED_ROWS:]:
        row["rating"] = ""
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "rating", "date"])
        writer.writeheader()
        writer.writerows(rows)
    return target


def api_get(server: LiveServer, path: str) -> Any:
    with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as response:  # noqa: S310
        return json.load(response)


def create_project_in_form(page: Any, server: LiveServer) -> int:
    page.goto(f"{server.url}/")
    page.get_by_role("link", name="New project").first.click()
    page.fill("#name", "Ethereum tweets")
    page.fill("#description", "Is this tweet useful to an Ethereum trader?")
    page.click("#add-label")
    for index, name in enumerate(LABELS):
        page.fill(f"#labels-{index}-name", name)
    screenshot(page, "01-new-project")
    page.click("#submit")
    page.wait_for_url("**/import")
    return int(page.url.rstrip("/").split("/")[-2])


def import_through_page(page: Any, csv_path: Path) -> str:
    page.set_input_files("#file-input", str(csv_path))
    page.click("#upload-button")
    page.wait_for_selector("#step-map:not(.d-none)", timeout=TIMEOUT_MS)
    assert page.text_content("#fact-format") == "CSV"
    page.select_option("#label-column", "rating")
    for value, name in (("-1", "negative"), ("0", "useless"), ("1", "positive")):
        page.select_option(f'#label-map-table select[data-value="{value}"]', name)
    screenshot(page, "02-import-mapping")
    page.click("#import-button")
    page.wait_for_selector("#import-report:not(.d-none)", timeout=TIMEOUT_MS)
    screenshot(page, "03-import-report")
    return page.text_content("#import-summary") or ""


def shown_item_id(page: Any) -> str:
    return page.get_attribute("#item-text", "data-item-id") or ""


def label_by_keyboard(page: Any, answers: int) -> list[str]:
    """Press label keys for ``answers`` items; return the ids of the items answered."""
    answered = []
    page.wait_for_selector("#item-text[data-item-id]", timeout=TIMEOUT_MS)
    for index in range(answers):
        item_id = shown_item_id(page)
        answered.append(item_id)
        page.keyboard.press(str(index % len(LABELS) + 1))
        page.wait_for_function(
            "id => document.getElementById('item-text').dataset.itemId !== id",
            arg=item_id,
            timeout=TIMEOUT_MS,
        )
    page.wait_for_function(
        "() => document.getElementById('save-status').textContent === 'all answers saved'",
        timeout=TIMEOUT_MS,
    )
    return answered


def test_create_upload_label_retrain_export(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    events = watch(page)

    project_id = create_project_in_form(page, live_server)
    summary = import_through_page(page, tweets_csv(tmp_path / "tweets.csv"))
    assert f"{LABELLED_ROWS} of them labelled" in summary

    page.click("#go-label")
    answered = label_by_keyboard(page, ANSWERS)
    assert len(set(answered)) == ANSWERS
    progress = api_get(live_server, f"/api/v1/projects/{project_id}/progress")["progress"]
    assert progress["labelled"] == LABELLED_ROWS + ANSWERS
    screenshot(page, "04-labelling")

    page.keyboard.press("Backspace")
    page.wait_for_function(
        "id => document.getElementById('item-text').dataset.itemId === id",
        arg=answered[-1],
        timeout=TIMEOUT_MS,
    )
    progress = api_get(live_server, f"/api/v1/projects/{project_id}/progress")["progress"]
    assert progress["labelled"] == LABELLED_ROWS + ANSWERS - 1

    page.click("#retrain-button")
    page.wait_for_function(
        "() => document.getElementById('train-message').textContent.startsWith('Training')"
        " && document.getElementById('train-progress').classList.contains('d-none')",
        timeout=120_000,
    )
    assert page.text_content("#train-message") == (
        "Training finished; suggestions now come from the new model."
    )
    assert page.is_hidden("#label-alert")
    screenshot(page, "05-after-retrain")

    models = api_get(live_server, f"/api/v1/projects/{project_id}/models")["models"]
    newest = max(models, key=lambda model: model["version"])
    assert newest["is_current"]
    assert newest["n_labels"] == LABELLED_ROWS + ANSWERS - 1

    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_selector("#model-versions")
    assert page.text_content("#count-labelled") == str(LABELLED_ROWS + ANSWERS - 1)
    assert page.text_content("#current-macro-f1") == f"{newest['macro_f1']:.3f}"
    versions_table = page.text_content("#model-versions") or ""
    assert str(newest["n_labels"]) in versions_table
    for plot in ("learning-curve", "live-accuracy", "class-balance", "confusion-matrix"):
        page.wait_for_function(
            "id => { const img = document.getElementById(id);"
            " return img.complete && img.naturalWidth > 0; }",
            arg=f"plot-{plot}",
            timeout=TIMEOUT_MS,
        )
    screenshot(page, "06-dashboard")

    with page.expect_download(timeout=TIMEOUT_MS) as download_info:
        page.click('.export-button[data-format="csv"]')
    exported = download_info.value.path()
    with open(exported, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == LABELLED_ROWS + ANSWERS - 1
    assert {row["label"] for row in rows} <= set(LABELS)

    with page.expect_download(timeout=TIMEOUT_MS) as model_info:
        page.click("#download-model")
    assert model_info.value.suggested_filename.endswith(f"-v{newest['version']}.lnlmodel")

    assert events.dialogs == []
    assert events.errors == []
    context.close()


PAYLOADS = (
    "<img src=x onerror=alert('text')>",
    "<svg onload=alert('svg')>",
)


def seed_hostile_project(server: LiveServer, tmp_path: Path) -> int:
    """Create a project whose name, labels, items and metadata all carry HTML payloads."""
    project_id = create_project(
        server.db,
        ProjectSpec(
            name="<svg onload=alert('name')>",
            description="<img src=x onerror=alert('description')>",
            labels=[LabelSpec(name="<img src=x onerror=alert('label')>"), LabelSpec(name="ok")],
        ),
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "note", "link"])
    for payload in PAYLOADS:
        writer.writerow([payload, "<svg onload=alert('meta')>", "javascript:alert('link')"])
    path = tmp_path / "hostile.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    import_file(server.db, project_id, path, "hostile.csv", ColumnMapping(text_column="text"))
    return project_id


def test_html_payloads_render_as_text(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    project_id = seed_hostile_project(live_server, tmp_path)
    page = browser.new_page()
    events = watch(page)

    page.goto(f"{live_server.url}/projects/{project_id}/label")
    page.wait_for_selector("#item-text[data-item-id]", timeout=TIMEOUT_MS)
    shown = [page.text_content("#item-text")]
    assert page.text_content("#item-meta") is not None
    assert "<svg onload=alert('meta')>" in (page.text_content("#item-meta") or "")
    page.keyboard.press("Space")
    page.wait_for_function(
        "t => document.getElementById('item-text').textContent !== t",
        arg=shown[0],
        timeout=TIMEOUT_MS,
    )
    shown.append(page.text_content("#item-text"))
    assert sorted(shown) == sorted(PAYLOADS)
    assert page.locator("#item-text *").count() == 0
    screenshot(page, "07-payloads-as-text")

    for path in (
        "/",
        f"/projects/{project_id}",
        f"/projects/{project_id}/edit",
        f"/projects/{project_id}/import",
    ):
        page.goto(f"{live_server.url}{path}")
        assert page.locator("img[src='x'], svg[onload]").count() == 0, path

    assert events.dialogs == []
    assert events.errors == []
    assert not [url for url in events.requests if url.rstrip("/").endswith("/x")]
