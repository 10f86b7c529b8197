"""20 simulated annotators over HTTP on SQLite and PostgreSQL: every answer stored once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labelandlearn.auth import users
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from annotator_load import percentile, prepare_load_project, run_load, served  # noqa: E402

ANNOTATORS = 20
ANSWERS_EACH = 100
PASSWORD = "load test password 1"


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
    project_id, label_ids, credentials = prepare_load_project(
        db, ANNOTATORS, ANNOTATORS * ANSWERS_EACH + 200, PASSWORD
    )

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
