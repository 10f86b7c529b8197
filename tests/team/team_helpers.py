"""Helpers for team tests: projects whose items come through the real importer."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Project, User


def make_project(db: Database, name: str, labels: list[str], *, overlap: int = 1) -> int:
    """Insert a project with the given labels and return its id."""
    with db.session() as session:
        project = Project(
            name=name,
            overlap=overlap,
            labels=[
                Label(name=label, key=str(index + 1), position=index)
                for index, label in enumerate(labels)
            ],
        )
        session.add(project)
        session.flush()
        return project.id


def import_items(db: Database, project_id: int, path: Path) -> int:
    """Import a CSV with a ``text`` column as the project's items; return the dataset id."""
    report = import_file(db, project_id, path, None, ColumnMapping(text_column="text"))
    assert report.rows_imported == report.rows_read
    assert report.dataset_id is not None
    return report.dataset_id


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_user(db: Database, username: str) -> int:
    with db.session() as session:
        user = User(username=username)
        session.add(user)
        session.flush()
        return user.id


def small_project(db: Database, folder: Path) -> int:
    """Create a project with labels a, b, c, overlap 3 and four items ``text 0`` .. ``text 3``."""
    project_id = make_project(db, "small", ["a", "b", "c"], overlap=3)
    main = write_csv(folder / "main.csv", ["text"], [[f"text {row}"] for row in range(4)])
    import_items(db, project_id, main)
    return project_id


def add_answer(
    db: Database,
    project_id: int,
    item_id: int,
    user_id: int | None,
    label_id: int | None,
    *,
    source: str = "labeller",
    created_at: datetime | None = None,
    duration_ms: int | None = None,
    predicted_label_id: int | None = None,
    predicted_confidence: float | None = None,
) -> str:
    """Store one answer row directly and return its id."""
    with db.session() as session:
        answer = Answer(
            project_id=project_id,
            item_id=item_id,
            user_id=user_id,
            label_id=label_id,
            source=source,
            created_at=created_at or datetime.now(UTC),
            duration_ms=duration_ms,
            predicted_label_id=predicted_label_id,
            predicted_confidence=predicted_confidence,
        )
        session.add(answer)
        session.flush()
        return answer.id


def project_ids(db: Database, project_id: int) -> tuple[list[int], dict[str, int]]:
    """Return the project's item ids in file order and its label ids by name."""
    with db.session() as session:
        items = list(
            session.scalars(
                select(Item.id).where(Item.project_id == project_id).order_by(Item.position)
            )
        )
        rows = session.execute(select(Label.name, Label.id).where(Label.project_id == project_id))
        return items, {name: label_id for name, label_id in rows}
