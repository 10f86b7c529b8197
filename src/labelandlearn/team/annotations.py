"""Import per-annotator answers in long format onto the items of an imported file.

The file has one row per answer with the columns ``row_id`` (the 0-based data row of the
file the items came from, or the item's external id), ``annotator_id`` and ``label``. Each
annotator becomes a user without a password (so they cannot log in) and each row one answer
with source ``import``. Everything is written in one transaction: an import that fails leaves
nothing behind.
"""

from __future__ import annotations

import csv
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from labelandlearn.errors import ImportFormatError, NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Dataset, Item, Label, Project, User
from labelandlearn.team.review import chunked, refresh_training_labels

logger = logging.getLogger(__name__)

IMPORT_SOURCE = "import"
COLUMNS = ("row_id", "annotator_id", "label")
MAX_ROW_ERRORS = 1000
MAX_USERNAME = 150

MatchOn = Literal["row", "external_id"]

# Core tables: executemany through Core skips the ORM's per-row bookkeeping on bulk writes.
ANSWERS: Table = Answer.__table__  # type: ignore[assignment]
USERS: Table = User.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class AnnotationRow:
    """One answer as read from the file; ``line`` is its line in the file, for errors."""

    line: int
    row_id: str
    annotator_id: str
    label: str


@dataclass
class AnnotationImportReport:
    """Outcome of an annotation import: counts, and each skipped row with the reason."""

    rows_read: int = 0
    answers_created: int = 0
    users_created: int = 0
    annotators: int = 0
    items_answered: int = 0
    items_labelled: int = 0
    items_tied: int = 0
    rows_with_errors: int = 0
    row_errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def add_error(self, line: int, reason: str) -> None:
        self.rows_with_errors += 1
        if len(self.row_errors) < MAX_ROW_ERRORS:
            self.row_errors.append({"line": line, "reason": reason})


def read_annotation_rows(path: Path) -> Iterator[AnnotationRow]:
    """Yield the rows of a long-format CSV file (UTF-8, with or without a BOM)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        found = reader.fieldnames or []
        missing = [column for column in COLUMNS if column not in found]
        if missing:
            raise ImportFormatError(
                f"{path.name} has no column {', '.join(missing)}; columns found: "
                f"{', '.join(found) or 'none'}; the file needs row_id, annotator_id and label"
            )
        for record in reader:
            yield AnnotationRow(
                line=reader.line_num,
                row_id=(record["row_id"] or "").strip(),
                annotator_id=(record["annotator_id"] or "").strip(),
                label=(record["label"] or "").strip(),
            )


def import_annotations(
    db: Database,
    project_id: int,
    path: Path,
    *,
    dataset_id: int | None = None,
    match_on: MatchOn = "row",
    label_map: Mapping[str, str] | None = None,
) -> AnnotationImportReport:
    """Import the long-format annotation file ``path`` into the project; all or nothing.

    See :func:`import_annotation_rows` for the arguments.
    """
    report = import_annotation_rows(
        db,
        project_id,
        read_annotation_rows(path),
        dataset_id=dataset_id,
        match_on=match_on,
        label_map=label_map,
    )
    logger.info(
        "annotations imported project=%s file=%s answers=%d users_created=%d errors=%d "
        "seconds=%.2f",
        project_id,
        path.name,
        report.answers_created,
        report.users_created,
        report.rows_with_errors,
        report.seconds,
    )
    return report


def import_annotation_rows(
    db: Database,
    project_id: int,
    rows: Iterable[AnnotationRow],
    *,
    dataset_id: int | None = None,
    match_on: MatchOn = "row",
    label_map: Mapping[str, str] | None = None,
) -> AnnotationImportReport:
    """Store one answer per (item, annotator) and set each answered item's training label.

    ``match_on="row"`` reads ``row_id`` as the 0-based data row of the imported file
    ``dataset_id`` (by default the project's only file); ``"external_id"`` matches it to the
    items' external ids. ``label_map`` maps label values of the file to label names. Rows
    that name no item, an unknown label, or an (item, annotator) pair that already has an
    answer are skipped and reported; if no row is left, nothing is written.
    """
    if match_on not in ("row", "external_id"):
        raise ValidationError(f"match_on must be 'row' or 'external_id', got {match_on!r}")
    started = time.monotonic()
    report = AnnotationImportReport()
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        items = _item_index(session, project_id, dataset_id, match_on)
        labels = _label_index(session, project_id, label_map)
        valid = _validate_rows(rows, items, labels, report)

        users = _ensure_users(session, sorted({annotator for _, _, annotator, _ in valid}), report)
        answers = _new_answers(session, project_id, valid, users, report)
        if not answers:
            raise ImportFormatError(_nothing_to_import(report))
        _insert_rows(session, ANSWERS, answers)

        touched = sorted({answer["item_id"] for answer in answers})
        counts = refresh_training_labels(session, project, touched)

    report.answers_created = len(answers)
    report.annotators = len(users)
    report.items_answered = len(touched)
    report.items_labelled = counts.labelled
    report.items_tied = counts.tied
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _item_index(
    session: Session, project_id: int, dataset_id: int | None, match_on: MatchOn
) -> dict[str, int]:
    """Map the file's ``row_id`` values to item ids."""
    if match_on == "external_id":
        rows = session.execute(
            select(Item.external_id, Item.id).where(
                Item.project_id == project_id, Item.external_id.is_not(None)
            )
        )
        return {str(external_id): item_id for external_id, item_id in rows}

    dataset = _source_dataset(session, project_id, dataset_id)
    skipped = dataset.rows_read - dataset.rows_imported
    if skipped:
        # Items store no data row number, so rows map to items by order only when every
        # data row became an item.
        raise ValidationError(
            f"file {dataset.filename!r} (dataset {dataset.id}) imported {dataset.rows_imported} "
            f"of {dataset.rows_read} rows, so row numbers no longer match items; import it "
            "with an id column and match annotations on external_id"
        )
    item_ids = session.scalars(
        select(Item.id).where(Item.dataset_id == dataset.id).order_by(Item.position)
    )
    return {str(row): item_id for row, item_id in enumerate(item_ids)}


def _source_dataset(session: Session, project_id: int, dataset_id: int | None) -> Dataset:
    datasets = list(
        session.scalars(
            select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.id)
        )
    )
    if dataset_id is not None:
        for dataset in datasets:
            if dataset.id == dataset_id:
                return dataset
        raise NotFoundError(f"dataset {dataset_id} not found in project {project_id}")
    if len(datasets) == 1:
        return datasets[0]
    if not datasets:
        raise ValidationError(
            f"project {project_id} has no imported file; import the items before their annotations"
        )
    listed = ", ".join(f"{dataset.id} ({dataset.filename})" for dataset in datasets)
    raise ValidationError(
        f"project {project_id} has several imported files: {listed}; pass the dataset id "
        "whose rows the annotations number"
    )


def _label_index(
    session: Session, project_id: int, label_map: Mapping[str, str] | None
) -> dict[str, int]:
    """Map label values of the file to label ids: names directly, then ``label_map``."""
    rows = session.execute(select(Label.name, Label.id).where(Label.project_id == project_id))
    by_name = {name: label_id for name, label_id in rows}
    index = dict(by_name)
    for value, name in (label_map or {}).items():
        if name not in by_name:
            raise ValidationError(
                f"label map sends {value!r} to {name!r}, which is not a label of project "
                f"{project_id}; labels are: {', '.join(sorted(by_name))}"
            )
        index[str(value)] = by_name[name]
    return index


def _validate_rows(
    rows: Iterable[AnnotationRow],
    items: dict[str, int],
    labels: dict[str, int],
    report: AnnotationImportReport,
) -> list[tuple[int, int, str, int]]:
    """Return (line, item id, annotator, label id) for each usable row; report the others."""
    valid: list[tuple[int, int, str, int]] = []
    seen: set[tuple[int, str]] = set()
    known_labels = ", ".join(sorted(labels))
    for row in rows:
        report.rows_read += 1
        item_id = items.get(row.row_id)
        if item_id is None:
            report.add_error(row.line, f"row_id {row.row_id!r} matches no item")
            continue
        if not row.annotator_id or len(row.annotator_id) > MAX_USERNAME:
            report.add_error(row.line, f"annotator_id must have 1 to {MAX_USERNAME} characters")
            continue
        label_id = labels.get(row.label)
        if label_id is None:
            report.add_error(
                row.line, f"label {row.label!r} is not a label; labels are: {known_labels}"
            )
            continue
        if (item_id, row.annotator_id) in seen:
            report.add_error(
                row.line,
                f"annotator {row.annotator_id!r} repeats row_id {row.row_id}; kept the first",
            )
            continue
        seen.add((item_id, row.annotator_id))
        valid.append((row.line, item_id, row.annotator_id, label_id))
    return valid


def _ensure_users(
    session: Session, usernames: list[str], report: AnnotationImportReport
) -> dict[str, int]:
    """Return user ids by username, creating password-less users for new annotators."""
    users = _user_ids(session, usernames)
    missing = [name for name in usernames if name not in users]
    if missing:
        now = datetime.now(UTC)
        _insert_rows(
            session,
            USERS,
            [
                {
                    "username": name,
                    "password_hash": None,
                    "is_admin": False,
                    "is_active": True,
                    "created_at": now,
                }
                for name in missing
            ],
        )
        users.update(_user_ids(session, missing))
        report.users_created = len(missing)
    return users


def _user_ids(session: Session, usernames: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunked(usernames):
        rows = session.execute(select(User.username, User.id).where(User.username.in_(chunk)))
        found.update({username: user_id for username, user_id in rows})
    return found


def _new_answers(
    session: Session,
    project_id: int,
    valid: list[tuple[int, int, str, int]],
    users: dict[str, int],
    report: AnnotationImportReport,
) -> list[dict[str, Any]]:
    """Build the answer rows, leaving out (item, user) pairs that already have an answer."""
    existing: set[tuple[int, int | None]] = set()
    user_ids = sorted(set(users.values()))
    for chunk in chunked(user_ids):
        rows = session.execute(
            select(Answer.item_id, Answer.user_id).where(
                Answer.project_id == project_id, Answer.user_id.in_(chunk)
            )
        )
        existing.update((item_id, user_id) for item_id, user_id in rows)
    now = datetime.now(UTC)
    answers = []
    for line, item_id, annotator, label_id in valid:
        user_id = users[annotator]
        if (item_id, user_id) in existing:
            report.add_error(
                line, f"annotator {annotator!r} already answered item {item_id}; kept that answer"
            )
            continue
        answers.append(
            {
                "id": str(uuid.uuid4()),
                "project_id": project_id,
                "item_id": item_id,
                "user_id": user_id,
                "label_id": label_id,
                "source": IMPORT_SOURCE,
                "created_at": now,
            }
        )
    return answers


def _insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows in bulk: COPY on PostgreSQL, a Core executemany elsewhere.

    All rows must have the same keys. psycopg runs an executemany as one INSERT per row, and
    COPY took about half the time for the 53,764 md-agreement answers.
    """
    if not rows:
        return
    columns = list(rows[0])
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), rows)
        return

    from psycopg import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])


def _nothing_to_import(report: AnnotationImportReport) -> str:
    if report.rows_read == 0:
        return "the annotation file has no data rows; add rows of row_id, annotator_id, label"
    first = report.row_errors[0] if report.row_errors else {"line": 0, "reason": "unknown"}
    return (
        f"none of the {report.rows_read} rows could be imported; first problem, line "
        f"{first['line']}: {first['reason']}"
    )
