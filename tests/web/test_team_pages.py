"""Team and review pages on a project with two annotators per item (single-user mode)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from labelandlearn.jobs.inprocess import SynchronousRunner
from labelandlearn.services import labelling
from labelandlearn.services.labelling import AnswerInput
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Label, Project, User
from labelandlearn.web.app import create_app


def _project_with_votes(db: Database) -> int:
    with db.session() as session:
        project = Project(
            name="votes",
            overlap=2,
            labels=[Label(name="yes", key="1", position=0), Label(name="no", key="2", position=1)],
        )
        session.add(project)
        session.flush()
        for position in range(6):
            text = f"item {position}"
            session.add(
                Item(
                    project_id=project.id,
                    text=text,
                    text_hash=hashlib.sha1(text.encode()).hexdigest(),
                    position=position,
                )
            )
        users = [User(username=name) for name in ("ann", "bob")]
        session.add_all(users)
        session.flush()
        project_id, label_ids = project.id, [label.id for label in project.labels]
        user_ids = [user.id for user in users]
    votes = {user_ids[0]: [0, 0, 1, 1, 0, 1], user_ids[1]: [0, 1, 1, 1, 0, 0]}
    for user_id, choices in votes.items():
        items = labelling.next_items(db, project_id, user_id, limit=6)
        for item, choice in zip(items, choices, strict=True):
            labelling.submit_answer(
                db,
                project_id,
                user_id,
                AnswerInput(item["id"], label_ids[choice], str(uuid.uuid4())),
            )
    return project_id


def test_team_page_shows_agreement(sqlite_db: Database, tmp_path: Path) -> None:
    project_id = _project_with_votes(sqlite_db)
    app = create_app(
        Settings(data_dir=tmp_path, database_url=sqlite_db.url),
        db=sqlite_db,
        runner=SynchronousRunner(sqlite_db),
    )
    client = app.test_client()
    page = client.get(f"/projects/{project_id}/team").get_data(as_text=True)
    assert "built-in method" not in page
    assert "6 items," in page
    assert 'id="fleiss"' in page
    assert "Dashboard" in page
    svg = client.get(f"/projects/{project_id}/team/kappa.svg")
    assert svg.status_code == 200
    assert svg.mimetype == "image/svg+xml"
    review = client.get(f"/projects/{project_id}/review").get_data(as_text=True)
    assert "2 items wait for a decision" in review
