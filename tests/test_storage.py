from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
import pytest

from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Project


def test_schema_upgrade_is_idempotent(db: Database) -> None:
    db.upgrade()
    with db.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
    assert {"projects", "labels", "items", "answers", "model_versions", "jobs"} <= tables


def test_answer_unique_per_item_and_user(db: Database) -> None:
    with db.session() as session:
        project = Project(name="p", labels=[Label(name="a", key="1"), Label(name="b", key="2")])
        session.add(project)
        session.flush()
        item = Item(project_id=project.id, text="t", text_hash="0" * 40, position=0)
        session.add(item)
        session.flush()
        session.add(
            Answer(project_id=project.id, item_id=item.id, user_id=None, label_id=None)
        )
        item_id, project_id = item.id, project.id
    from labelandlearn.storage.models import User

    with db.session() as session:
        user = User(username="u")
        session.add(user)
        session.flush()
        session.add(Answer(project_id=project_id, item_id=item_id, user_id=user.id))
        user_id = user.id
    with pytest.raises(IntegrityError):
        with db.session() as session:
            session.add(Answer(project_id=project_id, item_id=item_id, user_id=user_id))
