"""20 simulated annotators over HTTP on SQLite and PostgreSQL: every answer stored once."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from labelandlearn.auth import users
from labelandlearn.auth.permissions import set_membership
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Project

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from annotator_load import percentile, run_load, served  # noqa: E402

ANNOTATORS = 20
ANSWERS_EACH = 100
PASSWORD = "load test password 1"


def _prepare(db: Database, n_items: int) -> tuple[int, list[int], list[tuple[str, str]]]:
    db.upgrade()
    credentials = []
    with db.session() as session:
        project = Project(
            name="load",
            overlap=1,
            retrain_every=100_000,
            labels=[
                Label(name=name, key=str(i + 1), position=i)
                for i, name in enumerate(("negative", "useless", "positive"))
            ],
        )
        session.add(project)
        session.flush()
        session.execute(
            insert(Item),
            [
                {
                    "project_id": project.id,
                    "text": f"tweet number {i}",
                    "text_hash": hashlib.sha1(f"tweet number {i}".encode()).hexdigest(),
                    "position": i,
                }
                for i in range(n_items)
            ],
        )
        project_id = project.id
        label_ids = [label.id for label in project.labels]
    for index in range(ANNOTATORS):
        username = f"annotator{index:02d}"
        user_id = users.create_user(db, username, PASSWORD)
        with db.session() as session:
            set_membership(session, project_id, user_id, "annotator")
        credentials.append((username, PASSWORD))
    return project_id, label_ids, credentials


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Database]]:
    """Yield the URL of ``labelandlearn serve`` (a child process) and its database."""
    db = Database(database_url)
    db.upgrade()
    users.create_user(db, "admin", "load test secret 12", is_admin=True)
    try:
        with served(database_url, tmp_path, threads=16) as (base_url, _pid):
            yield base_url, db
    finally:
        db.dispose()


@pytest.mark.slow
def test_twenty_annotators_store_every_answer_once(server: tuple[str, Database]) -> None:
    base_url, db = server
    project_id, label_ids, credentials = _prepare(db, n_items=ANNOTATORS * ANSWERS_EACH + 200)

    results, seconds = run_load(base_url, project_id, label_ids, credentials, ANSWERS_EACH)

    errors = [error for result in results for error in result.errors]
    assert errors == []
    client_ids = set().union(*(result.stored_answer_ids for result in results))
    assert len(client_ids) == ANNOTATORS * ANSWERS_EACH
    assert sum(result.doubled for result in results) > 0
    assert sum(result.retried for result in results) > 0
    with db.session() as session:
        stored_ids = set(session.scalars(select(Answer.id)))
        most_answers = session.scalar(
            select(func.count(Answer.id))
            .group_by(Answer.item_id)
            .order_by(func.count(Answer.id).desc())
            .limit(1)
        )
        done = session.scalar(select(func.count()).select_from(Item).where(Item.done.is_(True)))
    assert stored_ids == client_ids
    assert most_answers == 1
    assert done == ANNOTATORS * ANSWERS_EACH

    latencies = [value for result in results for value in result.latencies_ms]
    print(  # noqa: T201 - shown with -s, the figures of this run
        f"\n{len(client_ids)} answers in {seconds:.1f} s = {len(client_ids) / seconds:.0f}/s; "
        f"next+submit p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
    )
