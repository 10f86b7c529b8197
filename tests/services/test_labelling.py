from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from labelandlearn.errors import ConflictError, NotFoundError, ValidationError
from labelandlearn.services import labelling
from labelandlearn.services.labelling import AnswerInput
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Lease, Project, User


def make_project(db: Database, n_items: int = 10, overlap: int = 1) -> tuple[int, list[int]]:
    """Create a project with labels a/b and ``n_items`` items; return its id and label ids."""
    with db.session() as session:
        project = Project(
            name=f"p-{uuid.uuid4().hex[:6]}",
            overlap=overlap,
            labels=[Label(name="a", key="1", position=0), Label(name="b", key="2", position=1)],
        )
        session.add(project)
        session.flush()
        for position in range(n_items):
            text = f"item {position}"
            session.add(
                Item(
                    project_id=project.id,
                    text=text,
                    text_hash=hashlib.sha1(text.encode()).hexdigest(),
                    position=position,
                )
            )
        return project.id, [label.id for label in project.labels]


def make_user(db: Database, name: str) -> int:
    with db.session() as session:
        user = User(username=name)
        session.add(user)
        session.flush()
        return user.id


def answer(item_id: int, label_id: int | None, answer_id: str | None = None) -> AnswerInput:
    return AnswerInput(item_id=item_id, label_id=label_id, answer_id=answer_id or str(uuid.uuid4()))


def test_next_items_in_file_order(db: Database) -> None:
    project_id, _ = make_project(db)
    user = make_user(db, "u")
    items = labelling.next_items(db, project_id, user, limit=3)
    assert [item["text"] for item in items] == ["item 0", "item 1", "item 2"]


def test_next_items_excludes_prefetched(db: Database) -> None:
    project_id, _ = make_project(db)
    user = make_user(db, "u")
    first = labelling.next_items(db, project_id, user, limit=2)
    more = labelling.next_items(
        db, project_id, user, limit=2, exclude=[item["id"] for item in first]
    )
    assert [item["text"] for item in more] == ["item 2", "item 3"]


def test_reload_returns_held_items(db: Database) -> None:
    project_id, _ = make_project(db)
    user = make_user(db, "u")
    first = labelling.next_items(db, project_id, user, limit=2)
    again = labelling.next_items(db, project_id, user, limit=2)
    assert [item["id"] for item in again] == [item["id"] for item in first]


def test_held_items_come_before_new_ones(db: Database) -> None:
    project_id, _ = make_project(db)
    user = make_user(db, "u")
    held = labelling.next_items(db, project_id, user, limit=1)
    with db.session() as session:
        # A lower priority than every other item: only holding it can put it first.
        session.execute(update(Item).where(Item.id == held[0]["id"]).values(score=-1.0))
    items = labelling.next_items(db, project_id, user, limit=3)
    assert [item["text"] for item in items] == ["item 0", "item 1", "item 2"]
    # Held items are ordered among themselves by priority, then come the new ones.
    more = labelling.next_items(db, project_id, user, limit=5)
    assert [item["text"] for item in more] == ["item 1", "item 2", "item 0", "item 3", "item 4"]


def test_overlap_one_hands_item_to_one_annotator(db: Database) -> None:
    project_id, _ = make_project(db, n_items=4)
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    alice_items = {item["id"] for item in labelling.next_items(db, project_id, alice, limit=2)}
    bob_items = {item["id"] for item in labelling.next_items(db, project_id, bob, limit=4)}
    assert len(alice_items) == 2
    assert len(bob_items) == 2
    assert not alice_items & bob_items


def test_overlap_two_hands_item_to_two(db: Database) -> None:
    project_id, labels = make_project(db, n_items=1, overlap=2)
    users = [make_user(db, name) for name in ("a", "b", "c")]
    handed = [labelling.next_items(db, project_id, user, limit=1) for user in users]
    assert [len(items) for items in handed] == [1, 1, 0]
    for user in users[:2]:
        labelling.submit_answer(db, project_id, user, answer(handed[0][0]["id"], labels[0]))
    with db.session() as session:
        item = session.scalars(select(Item).where(Item.project_id == project_id)).one()
        assert item.n_answers == 2
        assert item.done is True
        assert item.label_id == labels[0]


def test_answer_after_others_took_every_slot_conflicts(db: Database) -> None:
    project_id, labels = make_project(db, n_items=1)
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    item_id = labelling.next_items(db, project_id, alice, limit=1)[0]["id"]
    with pytest.raises(ConflictError, match="already handed"):
        labelling.submit_answer(db, project_id, bob, answer(item_id, labels[0]))


def test_expired_lease_returns_item_to_queue(db: Database) -> None:
    project_id, _ = make_project(db, n_items=1)
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    item_id = labelling.next_items(db, project_id, alice, limit=1)[0]["id"]
    assert labelling.next_items(db, project_id, bob, limit=1) == []
    with db.session() as session:
        lease = session.scalars(select(Lease)).one()
        session.execute(
            update(Lease).values(expires_at=lease.expires_at - timedelta(hours=2))
        )
    assert [item["id"] for item in labelling.next_items(db, project_id, bob, limit=1)] == [
        item_id
    ]


def test_doubled_request_stores_one_answer(db: Database) -> None:
    project_id, labels = make_project(db)
    user = make_user(db, "u")
    item_id = labelling.next_items(db, project_id, user, limit=1)[0]["id"]
    answer_id = str(uuid.uuid4())
    first = labelling.submit_answer(db, project_id, user, answer(item_id, labels[0], answer_id))
    second = labelling.submit_answer(db, project_id, user, answer(item_id, labels[0], answer_id))
    assert first["created"] is True
    assert second["created"] is False
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Answer)) == 1


def test_reused_id_for_other_answer_conflicts(db: Database) -> None:
    project_id, labels = make_project(db)
    user = make_user(db, "u")
    item_id = labelling.next_items(db, project_id, user, limit=1)[0]["id"]
    answer_id = str(uuid.uuid4())
    labelling.submit_answer(db, project_id, user, answer(item_id, labels[0], answer_id))
    for reused in (answer(10**9, labels[0], answer_id), answer(item_id, labels[1], answer_id)):
        with pytest.raises(ConflictError, match=f"already stores an answer for item {item_id}"):
            labelling.submit_answer(db, project_id, user, reused)
    retry = labelling.submit_answer(db, project_id, user, answer(item_id, labels[0], answer_id))
    assert retry["created"] is False
    assert retry["item_id"] == item_id
    assert retry["label"] == "a"


def test_answer_id_of_other_user_conflicts(db: Database) -> None:
    project_id, labels = make_project(db)
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    alice_item = labelling.next_items(db, project_id, alice, limit=1)[0]["id"]
    bob_item = labelling.next_items(db, project_id, bob, limit=1)[0]["id"]
    answer_id = str(uuid.uuid4())
    labelling.submit_answer(db, project_id, alice, answer(alice_item, labels[0], answer_id))
    with pytest.raises(ConflictError, match="already used"):
        labelling.submit_answer(db, project_id, bob, answer(bob_item, labels[0], answer_id))


def test_answer_in_callers_session_is_committed(db: Database) -> None:
    project_id, labels = make_project(db)
    user = make_user(db, "u")
    session = db.session_factory()
    try:
        project = labelling.load_project_state(session, project_id)
        items = labelling.next_items(
            db, project_id, user, limit=1, session=session, project=project
        )
        stored = labelling.submit_answer(
            db, project_id, user, answer(items[0]["id"], labels[1]), session=session
        )
    finally:
        session.close()
    assert stored["created"] is True
    with db.session() as check:
        assert check.get(Item, items[0]["id"]).label_id == labels[1]  # type: ignore[union-attr]


def test_changed_answer_conflicts_with_current(db: Database) -> None:
    project_id, labels = make_project(db)
    user = make_user(db, "u")
    item_id = labelling.next_items(db, project_id, user, limit=1)[0]["id"]
    labelling.submit_answer(db, project_id, user, answer(item_id, labels[0]))
    with pytest.raises(ConflictError) as caught:
        labelling.submit_answer(db, project_id, user, answer(item_id, labels[1]))
    assert caught.value.details["current"]["label"] == "a"
    replaced = AnswerInput(
        item_id=item_id, label_id=labels[1], answer_id=str(uuid.uuid4()), replace=True
    )
    labelling.submit_answer(db, project_id, user, replaced)
    with db.session() as session:
        assert session.get(Item, item_id).label_id == labels[1]  # type: ignore[union-attr]


def test_answer_rejects_foreign_label_and_item(db: Database) -> None:
    project_id, labels = make_project(db)
    other_project, other_labels = make_project(db)
    user = make_user(db, "u")
    item_id = labelling.next_items(db, project_id, user, limit=1)[0]["id"]
    with pytest.raises(ValidationError, match="not a label of project"):
        labelling.submit_answer(db, project_id, user, answer(item_id, other_labels[0]))
    with pytest.raises(NotFoundError, match="not found in project"):
        labelling.submit_answer(db, other_project, user, answer(item_id, other_labels[0]))
    with pytest.raises(ValidationError, match="not a UUID"):
        labelling.submit_answer(db, project_id, user, answer(item_id, labels[0], "x"))


def test_undo_hands_item_back(db: Database) -> None:
    project_id, labels = make_project(db)
    user = make_user(db, "u")
    item_id = labelling.next_items(db, project_id, user, limit=1)[0]["id"]
    labelling.submit_answer(db, project_id, user, answer(item_id, labels[0]))
    undone = labelling.undo_last(db, project_id, user)
    assert undone is not None
    assert undone["item"]["id"] == item_id
    with db.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        assert item.label_id is None
        assert item.done is False
        assert session.scalar(select(func.count()).select_from(Answer)) == 0
    assert labelling.next_items(db, project_id, user, limit=1)[0]["id"] == item_id
    assert labelling.undo_last(db, project_id, user) is None


def test_undo_named_answer_when_stored_out_of_order(db: Database) -> None:
    project_id, labels = make_project(db, n_items=3)
    user = make_user(db, "u")
    first, second = (item["id"] for item in labelling.next_items(db, project_id, user, limit=2))
    given_last = answer(second, labels[1])
    # The later answer reached the server first, so the earlier one is the newest stored.
    labelling.submit_answer(db, project_id, user, given_last)
    labelling.submit_answer(db, project_id, user, answer(first, labels[0]))

    undone = labelling.undo_last(db, project_id, user, answer_id=given_last.answer_id)

    assert undone is not None
    assert undone["item"]["id"] == second
    assert undone["undone"]["answer_id"] == given_last.answer_id
    with db.session() as session:
        assert session.get(Item, first).label_id == labels[0]  # type: ignore[union-attr]
        assert session.get(Item, second).label_id is None  # type: ignore[union-attr]
    with pytest.raises(NotFoundError, match="undone already or never stored"):
        labelling.undo_last(db, project_id, user, answer_id=given_last.answer_id)


def test_skip_is_not_served_again(db: Database) -> None:
    project_id, _ = make_project(db, n_items=2)
    user = make_user(db, "u")
    item_id = labelling.next_items(db, project_id, user, limit=1)[0]["id"]
    labelling.submit_answer(db, project_id, user, answer(item_id, None))
    remaining = labelling.next_items(db, project_id, user, limit=5)
    assert [item["text"] for item in remaining] == ["item 1"]
    assert labelling.progress(db, project_id)["skipped"] == 1


def test_progress_counts_per_label(db: Database) -> None:
    project_id, labels = make_project(db, n_items=5)
    user = make_user(db, "u")
    items = labelling.next_items(db, project_id, user, limit=3)
    for item, label in zip(items, [labels[0], labels[0], labels[1]], strict=True):
        labelling.submit_answer(db, project_id, user, answer(item["id"], label))
    progress = labelling.progress(db, project_id)
    assert progress["total"] == 5
    assert progress["labelled"] == 3
    assert progress["per_label"] == {"a": 2, "b": 1}


def test_live_accuracy_per_label(db: Database) -> None:
    project_id, labels = make_project(db, n_items=4)
    user = make_user(db, "u")
    items = labelling.next_items(db, project_id, user, limit=4)
    shown_and_given = [(0, 0), (0, 1), (1, 1), (1, 1)]
    for item, (shown, given) in zip(items, shown_and_given, strict=True):
        labelling.submit_answer(
            db,
            project_id,
            user,
            AnswerInput(
                item_id=item["id"],
                label_id=labels[given],
                answer_id=str(uuid.uuid4()),
                predicted_label_id=labels[shown],
            ),
        )
    live = labelling.live_accuracy(db, project_id)
    assert live["accuracy"] == pytest.approx(0.75)
    assert live["per_label"]["a"] == {"answers": 1, "accuracy": 1.0}
    assert live["per_label"]["b"]["accuracy"] == pytest.approx(2 / 3)
    assert len(live["series"]) == 4
