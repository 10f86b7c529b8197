"""Simulated annotators over HTTP on SQLite and PostgreSQL: every answer stored once.

The closed-loop test runs the full 20 annotators x 100 answers; the paced one offers a small
rate, to cover the open-loop path of ``benchmarks/annotator_load.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labelandlearn.auth import users
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from annotator_load import (  # noqa: E402
    Annotator,
    AnnotatorResult,
    Pacing,
    pacing_for,
    percentile,
    prepare_load_project,
    run_load,
    served,
)

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


def _check_stored_once(db: Database, results: list[AnnotatorResult], expected: int) -> set[str]:
    """Assert that every confirmed answer is stored once and nothing else; return the ids."""
    errors = [error for result in results for error in result.errors]
    assert errors == []
    client_ids = set().union(*(result.stored_answer_ids for result in results))
    assert len(client_ids) == expected
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
    assert done == expected
    return client_ids


@pytest.mark.slow
def test_twenty_annotators_store_every_answer_once(server: tuple[str, Database]) -> None:
    base_url, db = server
    project_id, label_ids, credentials = prepare_load_project(
        db, ANNOTATORS, ANNOTATORS * ANSWERS_EACH + 200, PASSWORD
    )

    results, seconds = run_load(base_url, project_id, label_ids, credentials, ANSWERS_EACH)

    client_ids = _check_stored_once(db, results, ANNOTATORS * ANSWERS_EACH)
    latencies = [value for result in results for value in result.latencies_ms]
    print(  # noqa: T201 - shown with -s, the figures of this run
        f"\n{len(client_ids)} answers in {seconds:.1f} s = {len(client_ids) / seconds:.0f}/s; "
        f"next+submit p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
    )


@pytest.mark.slow
def test_paced_annotators_store_every_answer_once(server: tuple[str, Database]) -> None:
    base_url, db = server
    annotators, answers_each, rate = 5, 30, 60.0
    project_id, label_ids, credentials = prepare_load_project(
        db, annotators, annotators * answers_each + 50, PASSWORD
    )

    results, seconds = run_load(
        base_url, project_id, label_ids, credentials, answers_each, rate=rate
    )

    _check_stored_once(db, results, annotators * answers_each)
    # The schedule spreads the answers over (answers - 1) intervals of annotators / rate.
    assert seconds >= (answers_each - 1) * annotators / rate
    assert all(len(result.latencies_ms) >= answers_each for result in results)


def test_pacing_spreads_annotators_evenly() -> None:
    schedules = [pacing_for(index, 4, rate=200.0, start=10.0) for index in range(4)]
    starts = sorted(schedule.start_of(k) for schedule in schedules for k in range(3))
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert starts[0] == 10.0
    assert gaps == pytest.approx([1 / 200] * 11)


class _ScriptedAnnotator(Annotator):
    """An annotator whose server replies at once, except for a slow first next-item request."""

    def __init__(self, first_delay_s: float) -> None:
        super().__init__("http://127.0.0.1:9", "scripted", PASSWORD, seed=1)
        self.first_delay_s = first_delay_s
        self.next_requests = 0

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        if method == "GET":
            self.next_requests += 1
            if self.next_requests == 1:
                time.sleep(self.first_delay_s)
            return 200, json.dumps({"items": [{"id": self.next_requests}]}).encode()
        payload = json.loads(body or b"{}")
        return 201, json.dumps({"id": payload["id"], "created": True}).encode()


@pytest.mark.parametrize("paced", [False, True])
def test_paced_latency_counts_from_schedule(paced: bool) -> None:
    annotator = _ScriptedAnnotator(first_delay_s=0.2)
    result = AnnotatorResult("scripted")
    pacing = Pacing(first=time.monotonic(), interval=0.01) if paced else None

    annotator.run(
        1, [1], 3, result, time.monotonic() + 30, double_rate=0, retry_rate=0, pacing=pacing
    )

    assert result.latencies_ms[0] >= 200
    if paced:
        # Answer 1 was due 10 ms after the start but waited for the slow answer 0.
        assert result.latencies_ms[1] >= 180
        assert result.behind_schedule >= 1
    else:
        assert result.latencies_ms[1] < 100
        assert result.behind_schedule == 0
