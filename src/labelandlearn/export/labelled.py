"""Export a project's labelled items as CSV or JSON Lines, streamed in batches.

Each row contains the item's original columns (id, text and metadata, under the names of the
project's columns), then ``label`` (the label name), ``labelled_by`` (the labeller's user
name, or the answer's source such as ``import`` when no user gave it) and ``labelled_at``
(ISO 8601, UTC). Importing the file again with ``label_column="label"`` gives the same labels.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Project, User

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("csv", "jsonl")
BATCH_ROWS = 1000
LABEL_COLUMNS = ("label", "labelled_by", "labelled_at")
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection). The
# CSV export prefixes such cells with an apostrophe, which spreadsheets show as plain text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class ExportProgress(Protocol):
    def __call__(self, fraction: float, message: str = "", *, force: bool = False) -> None: ...


def neutralise_formula(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with an apostrophe."""
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


@dataclass(frozen=True)
class _Layout:
    """The export's columns: where the text and id go and the metadata keys in file order."""

    text_column: str
    id_column: str | None
    meta_columns: dict[str, str]

    @property
    def header(self) -> list[str]:
        columns = [self.id_column] if self.id_column else []
        return [*columns, self.text_column, *self.meta_columns.values(), *LABEL_COLUMNS]


def export_labelled(
    db: Database,
    project_id: int,
    out: Path | str | IO[bytes],
    fmt: str = "csv",
    *,
    progress: ExportProgress | None = None,
) -> int:
    """Write every labelled item of the project to ``out`` (a path or a binary stream).

    ``fmt`` is ``csv`` or ``jsonl``. Returns the number of rows written.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(
            f"export format {fmt!r} is not supported; use one of {', '.join(EXPORT_FORMATS)}"
        )
    with db.session() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        total = session.scalar(_labelled_items(project_id, func.count(Item.id))) or 0
        layout = _layout(session, project)
        query = select(Label.id, Label.name).where(Label.project_id == project_id)
        labels = {label_id: name for label_id, name in session.execute(query)}
        with _text_output(out) as text:
            writer = _RowWriter(text, fmt, layout)
            rows = 0
            for batch in _iter_batches(session, project_id, labels):
                for row in batch:
                    writer.write(row)
                rows += len(batch)
                if progress is not None and total:
                    progress(rows / total, f"exported {rows} of {total} rows")
    logger.info("export project=%s format=%s rows=%d", project_id, fmt, rows)
    return rows


def _labelled_items(project_id: int, *columns: Any) -> Any:
    return select(*columns).where(Item.project_id == project_id, Item.label_id.is_not(None))


def _layout(session: Session, project: Project) -> _Layout:
    """Collect the metadata keys of all labelled items in the order they first appear."""
    keys: dict[str, None] = {}
    has_ids = False
    query = _labelled_items(project.id, Item.meta, Item.external_id).order_by(Item.id)
    for meta, external_id in session.execute(query.execution_options(yield_per=BATCH_ROWS)):
        has_ids = has_ids or external_id is not None
        if meta:
            keys.update(dict.fromkeys(meta))

    # NOTE: Dataset rows do not record the import's column mapping, so the text and id columns
    # take the project's column names even where an import mapped other names.
    text_column = project.text_column or "text"
    id_column = (project.id_column or "id") if has_ids else None
    reserved = {text_column, id_column, *LABEL_COLUMNS}
    # A metadata key that clashes with a column of our own is written under a new name.
    meta_columns = {key: f"{key}_original" if key in reserved else key for key in keys}
    return _Layout(text_column, id_column, meta_columns)


def _iter_batches(
    session: Session, project_id: int, labels: dict[int, str]
) -> Iterator[list[dict[str, Any]]]:
    """Yield labelled items in id order, BATCH_ROWS at a time, with who labelled them."""
    last_id = 0
    while True:
        query = (
            _labelled_items(
                project_id,
                Item.id,
                Item.external_id,
                Item.text,
                Item.meta,
                Item.label_id,
                Item.labelled_at,
            )
            .where(Item.id > last_id)
            .order_by(Item.id)
            .limit(BATCH_ROWS)
        )
        items = session.execute(query).all()
        if not items:
            return
        last_id = items[-1].id
        labellers = _labellers(
            session, [item.id for item in items], {item.id: item.label_id for item in items}
        )
        batch = []
        for item in items:
            labelled_by, answered_at = labellers.get(item.id, (None, None))
            batch.append(
                {
                    "external_id": item.external_id,
                    "text": item.text,
                    "meta": item.meta or {},
                    "label": labels.get(item.label_id),
                    "labelled_by": labelled_by,
                    "labelled_at": _iso_utc(item.labelled_at or answered_at),
                }
            )
        yield batch


def _labellers(
    session: Session, item_ids: list[int], item_labels: dict[int, int]
) -> dict[int, tuple[str, datetime]]:
    """Return, per item, who gave its current label and when: the latest answer with it."""
    query = (
        select(Answer.item_id, Answer.label_id, Answer.source, User.username, Answer.created_at)
        .outerjoin(User, User.id == Answer.user_id)
        .where(Answer.item_id.in_(item_ids), Answer.label_id.is_not(None))
        .order_by(Answer.created_at)
    )
    found: dict[int, tuple[str, datetime]] = {}
    matched: set[int] = set()
    for item_id, label_id, source, username, created_at in session.execute(query):
        matches = label_id == item_labels.get(item_id)
        if item_id in matched and not matches:
            continue
        found[item_id] = (username or source, created_at)
        if matches:
            matched.add(item_id)
    return found


def _iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # SQLite returns naive date-times; every time the application stores is UTC.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@contextmanager
def _text_output(out: Path | str | IO[bytes]) -> Iterator[IO[str]]:
    """Open a path for writing, or wrap a binary stream without closing it afterwards."""
    if isinstance(out, str | Path):
        with Path(out).open("w", encoding="utf-8", newline="") as handle:
            yield handle
        return
    wrapper = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        yield wrapper
        wrapper.flush()
    finally:
        wrapper.detach()


class _RowWriter:
    def __init__(self, text: IO[str], fmt: str, layout: _Layout) -> None:
        self.text = text
        self.fmt = fmt
        self.layout = layout
        self.csv_writer = None
        if fmt == "csv":
            self.csv_writer = csv.writer(text)
            self.csv_writer.writerow(layout.header)

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        layout = self.layout
        values: dict[str, Any] = {}
        if layout.id_column:
            values[layout.id_column] = row["external_id"]
        values[layout.text_column] = row["text"]
        meta = row["meta"]
        for key, column in layout.meta_columns.items():
            values[column] = meta.get(key)
        values["label"] = row["label"]
        values["labelled_by"] = row["labelled_by"]
        values["labelled_at"] = row["labelled_at"]
        return values

    def write(self, row: dict[str, Any]) -> None:
        values = self._values(row)
        if self.csv_writer is None:
            self.text.write(json.dumps(values, ensure_ascii=False) + "\n")
            return
        self.csv_writer.writerow(
            ["" if value is None else neutralise_formula(str(value)) for value in values.values()]
        )
