"""Two annotators at once in Chromium, and hostile text on every page of a project."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_fixtures import (  # noqa: F401 (browser is a fixture)
    CHROMIUM_ARGS,
    LiveServer,
    browser,
    screenshot,
    watch,
)
from werkzeug.serving import make_server

from labelandlearn.auth import users
from labelandlearn.auth.permissions import set_membership
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Project
from labelandlearn.web.app import create_app

pytestmark = pytest.mark.browser

PASSWORD = "browser password 12"
PAYLOADS = (
    '<img src=x onerror="alert(1)">',
    "<svg onload=alert(2)>",
    '<a href="javascript:alert(3)">click</a>',
)
TIMEOUT_MS = 20_000


@pytest.fixture
def accounts_server(tmp_path: Path) -> Iterator[LiveServer]:
    data_dir = tmp_path / "data"
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'app.db'}",
        accounts=True,
        secret_key="browser-team-secret",
    )
    db = Database(settings.resolved_database_url)
    db.upgrade()
    users.create_user(db, "admin", PASSWORD, is_admin=True)
    app = create_app(settings, db=db)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", db, data_dir)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["labelandlearn"].runner.shutdown(wait=True)
        db.dispose()


def _project(db: Database, name: str, labels: list[str], texts: list[str], overlap: int = 1) -> int:
    with db.session() as session:
        project = Project(
            name=name,
            overlap=overlap,
            retrain_every=10_000,
            labels=[
                Label(name=label, key=str(i + 1), position=i) for i, label in enumerate(labels)
            ],
        )
        session.add(project)
        session.flush()
        for position, text in enumerate(texts):
            session.add(
                Item(
                    project_id=project.id,
                    text=text,
                    text_hash=hashlib.sha1(text.encode()).hexdigest(),
                    position=position,
                    meta={"source": PAYLOADS[position % len(PAYLOADS)], "n": str(position)},
                )
            )
        return project.id


def _login(context: Any, server: LiveServer, username: str) -> Any:
    page = context.new_page()
    page.goto(f"{server.url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)
    return page


def _shown_text(page: Any) -> str:
    page.wait_for_function(
        "() => document.getElementById('item-text').textContent.trim().length > 0",
        timeout=TIMEOUT_MS,
    )
    return str(page.inner_text("#item-text"))


def test_two_annotators_never_see_same_item(browser: Any, accounts_server: LiveServer) -> None:
    db = accounts_server.db
    texts = [f"tweet {i} about ethereum" for i in range(40)]
    project_id = _project(db, "Shared", ["useless", "useful"], texts)
    for name in ("anna", "bert"):
        user_id = users.create_user(db, name, PASSWORD)
        with db.session() as session:
            set_membership(session, project_id, user_id, "annotator")

    pages = [_login(browser.new_context(), accounts_server, name) for name in ("anna", "bert")]
    for page in pages:
        page.goto(f"{accounts_server.url}/projects/{project_id}/label")
    seen: list[list[str]] = [[], []]
    for _ in range(8):
        for index, page in enumerate(pages):
            text = _shown_text(page)
            seen[index].append(text)
            page.keyboard.press("1")
            page.wait_for_function(
                "(previous) => document.getElementById('item-text').textContent !== previous",
                arg=text,
                timeout=TIMEOUT_MS,
            )
    screenshot(pages[0], "team-two-annotators-anna")
    screenshot(pages[1], "team-two-annotators-bert")

    assert len(set(seen[0])) == 8
    assert len(set(seen[1])) == 8
    assert set(seen[0]).isdisjoint(seen[1])
    with db.session() as session:
        answers = session.query(Answer.item_id).all()
    item_ids = [row.item_id for row in answers]
    assert len(item_ids) == len(set(item_ids)) == 16


def test_payloads_render_as_text_on_every_page(browser: Any, accounts_server: LiveServer) -> None:
    db = accounts_server.db
    project_id = _project(
        db,
        f"Project {PAYLOADS[0]}",
        [f"neg {PAYLOADS[1]}", f"pos {PAYLOADS[0]}"],
        [f"item {i} {payload}" for i, payload in enumerate(PAYLOADS * 3)],
        overlap=2,
    )
    page = _login(browser.new_context(), accounts_server, "admin")
    events = watch(page)
    paths = [
        "/",
        f"/projects/{project_id}",
        f"/projects/{project_id}/label",
        f"/projects/{project_id}/import",
        f"/projects/{project_id}/edit",
        f"/projects/{project_id}/team",
        f"/projects/{project_id}/review",
        f"/projects/{project_id}/members",
        "/account",
        "/admin/users",
    ]
    for path in paths:
        response = page.goto(f"{accounts_server.url}{path}")
        assert response is not None
        assert response.status == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        page.wait_for_load_state("networkidle")
        body = page.content()
        assert "<img src=x" not in body.replace("&lt;img src=x", ""), path
        screenshot(page, "payloads" + path.replace("/", "_"))

    label_page = f"{accounts_server.url}/projects/{project_id}/label"
    page.goto(label_page)
    shown = _shown_text(page)
    assert shown.startswith("item 0 ")
    assert PAYLOADS[0] in shown
    assert page.locator("#item-text img").count() == 0
    assert events.dialogs == []
    foreign = [url for url in events.requests if not url.startswith(accounts_server.url)]
    assert foreign == []
