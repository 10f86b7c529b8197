from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

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


def test_older_database_upgrades_in_place(database_url: str) -> None:
    from labelandlearn.storage.db import upgrade_schema

    database = Database(database_url)
    upgrade_schema(database.engine, "0001")
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO projects (id, name, description, text_column, model_name, "
                "strategy_name, retrain_every, created_at, updated_at) VALUES (1, 'old', '', "
                "'text', 'tfidf-linear', 'margin', 50, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO labels (id, project_id, name, key, color, position) "
                "VALUES (1, 1, 'a', '1', '#000000', 0)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO items (id, project_id, text, text_hash, position, score, label_id, "
                "created_at) VALUES (1, 1, 'x', 'h1', 0, 0, 1, CURRENT_TIMESTAMP), "
                "(2, 1, 'y', 'h2', 1, 0, NULL, CURRENT_TIMESTAMP)"
            )
        )
    database.upgrade()
    with database.session() as session:
        items = {item.id: item for item in session.scalars(sa.select(Item))}
        project = session.get(Project, 1)
        assert project is not None
        assert project.overlap == 1
        assert items[1].done is True
        assert items[2].done is False
        assert items[1].label_id == 1
    database.dispose()
