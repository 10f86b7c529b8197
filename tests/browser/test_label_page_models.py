"""The labelling screen in Chromium when models change: suggestions and live accuracy."""

from __future__ import annotations

import csv
import json
import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from browser_fixtures import (  # noqa: F401 (browser and live_server are fixtures)
    LiveServer,
    browser,
    live_server,
    screenshot,
    watch,
)
from sqlalchemy import select

from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.services import labelling
from labelandlearn.services.projects import LabelSpec, ProjectSpec, create_project
from labelandlearn.storage.models import Answer, Label, User

pytestmark = pytest.mark.browser

LABELS = ("negative", "useless", "positive")
WORDS = ("crash scam dump", "meetup chatter weather", "moon gains rally")
TIMEOUT_MS = 60_000


def seed_project(server: LiveServer, tmp_path: Path, labelled: int, unlabelled: int) -> int:
    """Create a TF-IDF project with ``labelled`` labelled and ``unlabelled`` unlabelled items."""
    project_id = create_project(
        server.db,
        ProjectSpec(
            name="models",
            labels=[LabelSpec(name=name) for name in LABELS],
            model_name="tfidf-linear",
            retrain_every=100_000,
        ),
    )
    path = tmp_path / "items.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for index in range(labelled + unlabelled):
            label = LABELS[index % 3] if index < labelled else ""
            writer.writerow([f"ethereum {WORDS[index % 3]} number {index}", label])
    mapping = ColumnMapping(text_column="text", label_column="label")
    import_file(server.db, project_id, path, "items.csv", mapping)
    return project_id


def api_get(server: LiveServer, path: str) -> Any:
    with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as response:  # noqa: S310
        return json.load(response)


def retrain_on_page(page: Any) -> None:
    """Press Retrain and wait until the page reports the finished training."""
    page.evaluate("document.getElementById('train-message').textContent = ''")
    page.click("#retrain-button")
    page.wait_for_function(
        "() => document.getElementById('train-message').textContent.startsWith('Training')"
        " && document.getElementById('train-progress').classList.contains('d-none')",
        timeout=TIMEOUT_MS,
    )
    assert page.text_content("#train-message") == (
        "Training finished; suggestions now come from the new model."
    )


def test_retrain_refreshes_shown_suggestion(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    project_id = seed_project(live_server, tmp_path, labelled=45, unlabelled=20)
    page = browser.new_page()
    events = watch(page)
    page.goto(f"{live_server.url}/projects/{project_id}/label")
    page.wait_for_selector("#item-text[data-item-id]", timeout=TIMEOUT_MS)
    assert page.is_hidden("#prediction")
    item_on_screen = page.get_attribute("#item-text", "data-item-id")

    retrain_on_page(page)
    assert page.get_attribute("#item-text", "data-item-id") == item_on_screen
    assert page.is_visible("#prediction")
    assert page.text_content("#prediction-model") == "v1"

    retrain_on_page(page)
    assert page.get_attribute("#item-text", "data-item-id") == item_on_screen
    assert page.text_content("#prediction-model") == "v2"
    screenshot(page, "label-after-second-retrain")

    # The prefetched items carry the new model's suggestion too.
    for _ in range(3):
        page.keyboard.press("1")
        page.wait_for_function(
            "id => document.getElementById('item-text').dataset.itemId !== id",
            arg=item_on_screen,
            timeout=TIMEOUT_MS,
        )
        item_on_screen = page.get_attribute("#item-text", "data-item-id")
        assert page.text_content("#prediction-model") == "v2"

    assert events.dialogs == []
    assert events.errors == []


def test_live_accuracy_names_project_figure(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    project_id = seed_project(live_server, tmp_path, labelled=0, unlabelled=30)
    with live_server.db.session() as session:
        other = User(username="ann")
        session.add(other)
        session.flush()
        other_id = other.id
        label_ids = list(
            session.scalars(
                select(Label.id).where(Label.project_id == project_id).order_by(Label.position)
            )
        )
    # Another labeller answers 12 items; every other suggestion matched the answer.
    items = labelling.next_items(live_server.db, project_id, other_id, limit=12)
    for index, item in enumerate(items):
        labelling.submit_answer(
            live_server.db,
            project_id,
            other_id,
            labelling.AnswerInput(
                item_id=item["id"],
                label_id=label_ids[0],
                answer_id=str(uuid.uuid4()),
                predicted_label_id=label_ids[index % 2],
                predicted_confidence=0.6,
            ),
        )
    live = api_get(live_server, f"/api/v1/projects/{project_id}/progress")["live_accuracy"]
    assert live["answers"] == 12

    page = browser.new_page()
    page.goto(f"{live_server.url}/projects/{project_id}/label")
    page.wait_for_function(
        "() => document.getElementById('live-accuracy').textContent !== '–'",
        timeout=TIMEOUT_MS,
    )
    note = page.text_content("#live-accuracy-note") or ""
    assert page.text_content("#live-accuracy") == "50.0%"
    assert re.search(r"\bproject's last 12 answers\b", note), note
    assert "all labellers" in note
    assert "your answer" not in note


def test_failed_first_training_says_there_is_no_model(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    # Four labels over three classes leave two classes with one example: training fails.
    project_id = seed_project(live_server, tmp_path, labelled=4, unlabelled=5)
    page = browser.new_page()
    events = watch(page)
    page.goto(f"{live_server.url}/projects/{project_id}/label")
    page.wait_for_selector("#item-text[data-item-id]", timeout=TIMEOUT_MS)

    page.click("#retrain-button")
    page.wait_for_function(
        "() => document.getElementById('train-message').textContent === 'Training failed.'",
        timeout=TIMEOUT_MS,
    )

    alert = (page.text_content("#label-alert") or "").strip()
    assert alert.startswith("Training failed. The project has no model yet. Every label needs")
    assert "previous model" not in alert
    assert events.errors == []


def test_quick_undo_presses_each_undo_one_answer(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    project_id = seed_project(live_server, tmp_path, labelled=0, unlabelled=8)
    page = browser.new_page()
    events = watch(page)
    page.goto(f"{live_server.url}/projects/{project_id}/label")
    page.wait_for_selector("#item-text[data-item-id]", timeout=TIMEOUT_MS)
    answered = []
    for key in "1231":
        item_id = page.get_attribute("#item-text", "data-item-id")
        answered.append(item_id)
        page.keyboard.press(key)
        page.wait_for_function(
            "id => document.getElementById('item-text').dataset.itemId !== id",
            arg=item_id,
            timeout=TIMEOUT_MS,
        )
    page.wait_for_function(
        "() => document.getElementById('save-status').textContent === 'all answers saved'",
        timeout=TIMEOUT_MS,
    )

    # Four presses without a pause: the later ones wait for the running undo.
    for _ in range(4):
        page.keyboard.press("Backspace")
    page.wait_for_function(
        "id => document.getElementById('item-text').dataset.itemId === id",
        arg=answered[0],
        timeout=TIMEOUT_MS,
    )

    progress = api_get(live_server, f"/api/v1/projects/{project_id}/progress")["progress"]
    assert progress["labelled"] == 0
    assert events.errors == []


def open_label_page(server: LiveServer, browser: Any, tmp_path: Path) -> tuple[Any, Any, str]:
    """Open the labelling page of a 10-item project; return (page, its events, item shown)."""
    project_id = seed_project(server, tmp_path, labelled=0, unlabelled=10)
    page = browser.new_page()
    events = watch(page)
    page.goto(f"{server.url}/projects/{project_id}/label")
    page.wait_for_selector("#item-text[data-item-id]", timeout=TIMEOUT_MS)
    return page, events, page.get_attribute("#item-text", "data-item-id")


def wait_for_item(page: Any, item_id: str, shown: bool = True) -> str:
    """Wait until the page shows ``item_id`` (or, with ``shown=False``, another item)."""
    page.wait_for_function(
        "([id, shown]) => (document.getElementById('item-text').dataset.itemId === id) === shown",
        arg=[item_id, shown],
        timeout=TIMEOUT_MS,
    )
    return page.get_attribute("#item-text", "data-item-id")


def test_double_click_answers_one_item(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    page, events, first = open_label_page(live_server, browser, tmp_path)
    page.wait_for_timeout(500)

    # The second click lands on the next item, which appears within milliseconds.
    page.dblclick(".label-button >> nth=1")
    second = wait_for_item(page, first, shown=False)
    page.wait_for_timeout(500)
    page.click(".label-button >> nth=2")
    wait_for_item(page, second, shown=False)
    page.wait_for_function(
        "() => document.getElementById('save-status').textContent === 'all answers saved'",
        timeout=TIMEOUT_MS,
    )

    with live_server.db.session() as session:
        answered = list(session.scalars(select(Answer.item_id).order_by(Answer.id)))
    assert sorted(answered) == sorted([int(first), int(second)])
    assert events.dialogs == []
    assert events.errors == []


def test_undo_ignores_second_click_of_double_click(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    page, events, first = open_label_page(live_server, browser, tmp_path)
    page.keyboard.press("1")
    second = wait_for_item(page, first, shown=False)
    page.wait_for_timeout(500)

    # The second click of a double-click on a label that moved Undo under the pointer.
    page.evaluate(
        "document.getElementById('undo-button')"
        ".dispatchEvent(new MouseEvent('click', {detail: 2, bubbles: true}))"
    )
    page.wait_for_timeout(300)
    assert page.get_attribute("#item-text", "data-item-id") == second

    page.click("#undo-button")
    wait_for_item(page, first)
    assert events.dialogs == []
    assert events.errors == []
