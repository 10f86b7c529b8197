"""Training label rule, review queue and resolving with a gold label."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from team_helpers import add_answer, make_user, project_ids, small_project

from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item
from labelandlearn.team.review import resolve, review_queue, training_label


@pytest.mark.parametrize(
    ("answers", "gold", "count_single", "expected"),
    [
        ([1, 1, 2], None, True, 1),  # majority
        ([1, 2], None, True, None),  # tie waits for review
        ([1, 2, None], None, True, None),  # a skip does not break a tie
        ([1, 2], 2, True, 2),  # gold wins
        ([1, 1, 1], 2, False, 2),  # gold wins over a unanimous majority
        ([3], None, True, 3),  # one answer counts when allowed
        ([3], None, False, None),  # and waits otherwise
        ([3, None], None, False, None),  # a skip is not a second answer
        ([], None, True, None),
        ([None], None, True, None),
        ([1, 1, 2, 2, 3], None, True, None),  # tie at the top
    ],
)
def test_training_label_rule(
    answers: list[int | None], gold: int | None, count_single: bool, expected: int | None
) -> None:
    assert training_label(answers, gold, count_single) == expected


def _setup_queue(db: Database, project_id: int) -> tuple[list[int], dict[str, int], list[int]]:
    items, labels = project_ids(db, project_id)
    users = [make_user(db, f"user{index}") for index in range(3)]
    # Item 0: annotators disagree.
    add_answer(db, project_id, items[0], users[0], labels["a"])
    add_answer(db, project_id, items[0], users[1], labels["b"])
    # Item 1: agreement, but against a confident model.
    add_answer(
        db, project_id, items[1], users[0], labels["a"],
        predicted_label_id=labels["c"], predicted_confidence=0.95,
    )  # fmt: skip
    add_answer(db, project_id, items[1], users[1], labels["a"])
    # Item 2: disagrees with an unconfident model only.
    add_answer(
        db, project_id, items[2], users[0], labels["b"],
        predicted_label_id=labels["a"], predicted_confidence=0.6,
    )  # fmt: skip
    # Item 3: one labelled answer and one skip, so no disagreement.
    add_answer(db, project_id, items[3], users[0], labels["c"])
    add_answer(db, project_id, items[3], users[1], None)
    return items, labels, users


def test_review_queue_reasons(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    items, _, _ = _setup_queue(db, project_id)

    page = review_queue(db, project_id)

    assert page.total == 2
    assert [entry.item_id for entry in page.entries] == [items[0], items[1]]
    assert page.entries[0].reasons == ["disagreement"]
    assert page.entries[0].votes == {"a": 1, "b": 1}
    assert page.entries[1].reasons == ["model"]
    assert page.entries[1].answers[0]["predicted_label"] == "c"
    assert page.entries[1].answers[0]["username"] == "user0"


def test_review_queue_confidence_threshold(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    items, _, _ = _setup_queue(db, project_id)

    page = review_queue(db, project_id, confidence=0.5)

    assert [entry.item_id for entry in page.entries] == [items[0], items[1], items[2]]
    assert review_queue(db, project_id, limit=1, offset=1).entries[0].item_id == items[1]
    with pytest.raises(ValidationError, match="outside 0 to 1"):
        review_queue(db, project_id, confidence=1.5)


def test_resolve_stores_gold_and_keeps_answers(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    items, labels, _ = _setup_queue(db, project_id)
    reviewer = make_user(db, "reviewer")

    result = resolve(db, items[0], reviewer, labels["b"])

    assert result["label"] == "b"
    with db.session() as session:
        item = session.get(Item, items[0])
        assert item is not None
        assert item.label_id == labels["b"]
        assert item.reviewed
        assert item.done
        sources = sorted(session.scalars(select(Answer.source).where(Answer.item_id == items[0])))
    assert sources == ["labeller", "labeller", "review"]
    assert items[0] not in [entry.item_id for entry in review_queue(db, project_id).entries]


def test_resolve_again_replaces_decision(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    items, labels, _ = _setup_queue(db, project_id)
    reviewer = make_user(db, "reviewer")
    resolve(db, items[0], reviewer, labels["b"])

    resolve(db, items[0], reviewer, labels["c"])

    with db.session() as session:
        item = session.get(Item, items[0])
        assert item is not None
        assert item.label_id == labels["c"]
        reviews = session.scalar(
            select(func.count()).where(Answer.item_id == items[0], Answer.source == "review")
        )
    assert reviews == 1


def test_resolve_rejects_bad_requests(db: Database, tmp_path: Path) -> None:
    project_id = small_project(db, tmp_path)
    items, labels, users = _setup_queue(db, project_id)
    reviewer = make_user(db, "reviewer")

    with pytest.raises(ConflictError, match="answered item .* as an annotator"):
        resolve(db, items[0], users[0], labels["a"])
    with pytest.raises(NotFoundError, match="item 999999 not found"):
        resolve(db, 999999, reviewer, labels["a"])
    with pytest.raises(NotFoundError, match="user 999999 not found"):
        resolve(db, items[0], 999999, labels["a"])
    with pytest.raises(ValidationError, match="is not a label of project"):
        resolve(db, items[0], reviewer, 999999)
