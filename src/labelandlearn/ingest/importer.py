"""Import a file into a project: one Dataset, its Items and the Answers for existing labels.

The import runs in two phases. The first reads, maps and checks every row and spools the rows
to keep into a temporary file, reporting progress as it goes. The second writes them in one
transaction, so a failure at any point leaves no dataset, item or answer behind, and the
database's write lock (SQLite has one per file) is held only while rows are written.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.ingest.bulk import ItemInserter, insert_import_answers
from labelandlearn.ingest.mapping import ColumnMapping, MappedRow, RowError, RowMapper
from labelandlearn.ingest.readers import FileInfo, RecordReader
from labelandlearn.ingest.sniff import sniff_file
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Dataset, Item, Label, Project

logger = logging.getLogger(__name__)

BATCH_ROWS = 2000
MAX_STORED_ROW_ERRORS = 1000
DUPLICATE_MODES = ("skip", "keep")
# Share of the progress bar given to reading; writing takes the rest.
READ_SHARE = 0.8

DuplicateMode = Literal["skip", "keep"]
# (line, text, text_hash, external_id, label_id, meta) as spooled between the two phases.
SpooledRow = tuple[int, str, str, str | None, int | None, dict[str, str | None]]


class ProgressCallback(Protocol):
    def __call__(self, fraction: float, message: str = "", *, force: bool = False) -> None: ...


@dataclass
class ImportReport:
    """The outcome of one import, also stored on its Dataset row."""

    dataset_id: int | None = None
    filename: str = ""
    file_format: str = ""
    encoding: str | None = None
    rows_read: int = 0
    rows_imported: int = 0
    rows_labelled: int = 0
    rows_with_errors: int = 0
    row_errors: list[dict[str, Any]] = field(default_factory=list)
    duplicates_skipped: int = 0
    duplicates_kept: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add_error(self, error: RowError) -> None:
        self.rows_with_errors += 1
        if len(self.row_errors) < MAX_STORED_ROW_ERRORS:
            self.row_errors.append(error.as_dict())


def text_hash(text: str) -> str:
    """Return the SHA-1 hex digest that identifies exact duplicate texts."""
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def import_file(
    db: Database,
    project_id: int,
    path: Path,
    filename: str | None,
    mapping: ColumnMapping,
    *,
    duplicates: DuplicateMode = "skip",
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import ``path`` into the project and return the report; all or nothing.

    ``filename`` is the user's name for the file (an upload's original name) and defaults to
    the path's name. ``duplicates`` decides whether rows whose exact text is already in the
    project, or earlier in the file, are skipped or kept; both are counted.
    """
    if duplicates not in DUPLICATE_MODES:
        raise ValidationError(
            f"duplicates must be one of {', '.join(DUPLICATE_MODES)}, got {duplicates!r}"
        )
    started = time.monotonic()
    info = sniff_file(path, filename)
    report = ImportReport(
        filename=info.display_name, file_format=info.format, encoding=info.encoding
    )
    mapper = _load_mapper(db, project_id, mapping, info)

    with tempfile.TemporaryFile(prefix="labelandlearn-import-") as spool:
        spooled = _read_into_spool(path, info, mapper, duplicates, report, spool, progress)
        _report(progress, READ_SHARE, f"writing {spooled} rows to the database", force=True)
        spool.seek(0)
        _write_rows(db, project_id, spool, spooled, duplicates, report, progress)

    report.seconds = round(time.monotonic() - started, 3)
    _report(progress, 1.0, f"imported {report.rows_imported} rows", force=True)
    logger.info(
        "import project=%s dataset=%s format=%s rows_read=%d imported=%d labelled=%d "
        "errors=%d duplicates_skipped=%d duplicates_kept=%d seconds=%.2f",
        project_id,
        report.dataset_id,
        report.file_format,
        report.rows_read,
        report.rows_imported,
        report.rows_labelled,
        report.rows_with_errors,
        report.duplicates_skipped,
        report.duplicates_kept,
        report.seconds,
    )
    return report


def _report(
    progress: ProgressCallback | None, fraction: float, message: str, *, force: bool = False
) -> None:
    if progress is not None:
        progress(fraction, message, force=force)


def _load_mapper(
    db: Database, project_id: int, mapping: ColumnMapping, info: FileInfo
) -> RowMapper:
    with db.session() as session:
        labels = _project_labels(session, project_id)
    return RowMapper(mapping, info.columns, labels)


def _project_labels(session: Session, project_id: int) -> dict[str, int]:
    if session.get(Project, project_id) is None:
        raise NotFoundError(f"project {project_id} not found")
    rows = session.execute(
        select(Label.name, Label.id).where(Label.project_id == project_id).order_by(Label.position)
    )
    return {name: label_id for name, label_id in rows}


def _read_into_spool(
    path: Path,
    info: FileInfo,
    mapper: RowMapper,
    duplicates: DuplicateMode,
    report: ImportReport,
    spool: IO[bytes],
    progress: ProgressCallback | None,
) -> int:
    """Map every record, drop in-file duplicates when skipping, and pickle batches to ``spool``.

    Returns the number of rows spooled.
    """
    seen: set[str] = set()
    batch: list[SpooledRow] = []
    spooled = 0
    with RecordReader(path, info) as reader:
        for record in reader:
            report.rows_read += 1
            mapped = mapper.map(record)
            if isinstance(mapped, RowError):
                report.add_error(mapped)
                continue
            row = _spooled_row(mapped)
            if row[2] in seen:
                if duplicates == "skip":
                    report.duplicates_skipped += 1
                    continue
                report.duplicates_kept += 1
            seen.add(row[2])
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                pickle.dump(batch, spool, protocol=pickle.HIGHEST_PROTOCOL)
                spooled, batch = spooled + len(batch), []
                fraction = READ_SHARE * reader.fraction_done()
                _report(progress, fraction, f"read {report.rows_read} rows")
    if batch:
        pickle.dump(batch, spool, protocol=pickle.HIGHEST_PROTOCOL)
        spooled += len(batch)
    return spooled


def _spooled_row(mapped: MappedRow) -> SpooledRow:
    return (
        mapped.line,
        mapped.text,
        text_hash(mapped.text),
        mapped.external_id,
        mapped.label_id,
        mapped.meta,
    )


def _iter_spool(spool: IO[bytes]) -> Iterator[list[SpooledRow]]:
    while True:
        try:
            # The spool is a temporary file this process wrote itself.
            yield pickle.load(spool)  # noqa: S301
        except EOFError:
            return


def _write_rows(
    db: Database,
    project_id: int,
    spool: IO[bytes],
    total_rows: int,
    duplicates: DuplicateMode,
    report: ImportReport,
    progress: ProgressCallback | None,
) -> None:
    now = datetime.now(UTC)
    with db.session() as session:
        # Insert the dataset first: on SQLite this takes the write lock before the reads below,
        # so no other writer can add items between reading the hashes and inserting.
        dataset = Dataset(
            project_id=project_id,
            filename=report.filename[:500],
            file_format=report.file_format,
            encoding=report.encoding,
            created_at=now,
        )
        session.add(dataset)
        session.flush()
        report.dataset_id = dataset.id

        existing = set(session.scalars(select(Item.text_hash).where(Item.project_id == project_id)))
        last_position = session.scalar(
            select(func.max(Item.position)).where(Item.project_id == project_id)
        )
        first_position = 0 if last_position is None else last_position + 1

        connection = session.connection()
        constants = {"project_id": project_id, "dataset_id": dataset.id, "created_at": now}
        inserter = ItemInserter(connection, constants, labelled_at=now)
        # JobContext.progress writes from its own connection, which would wait for this
        # transaction's write lock on SQLite; PostgreSQL has no such lock.
        write_progress = None if db.is_sqlite else progress
        position = first_position
        counted: set[str] = set()
        for batch in _iter_spool(spool):
            rows = _drop_existing(batch, existing, duplicates, report, counted)
            inserter.insert([_item_row(row, position + index) for index, row in enumerate(rows)])
            position += len(rows)
            report.rows_imported += len(rows)
            written = READ_SHARE + (1 - READ_SHARE) * report.rows_imported / max(total_rows, 1)
            _report(write_progress, written, f"wrote {report.rows_imported} rows")

        report.rows_labelled = insert_import_answers(
            connection, project_id, dataset.id, first_position
        )
        _store_report(dataset, report)


def _item_row(row: SpooledRow, position: int) -> tuple[Any, ...]:
    """Return the ItemInserter tuple of a spooled row."""
    _line, text, hash_hex, external_id, label_id, meta = row
    # An imported label settles the item (done), so the labelling screen does not ask for it.
    done = label_id is not None
    return (external_id, text, hash_hex, meta or None, position, label_id, done)


def _drop_existing(
    batch: list[SpooledRow],
    existing: set[str],
    duplicates: DuplicateMode,
    report: ImportReport,
    counted: set[str],
) -> list[SpooledRow]:
    """Skip or count rows whose text the project contains already.

    When keeping, repeats within the file were counted while reading, so only the first
    row of each text is counted here. ``counted`` contains those texts' hashes.
    """
    if not existing:
        return batch
    rows: list[SpooledRow] = []
    for row in batch:
        hash_hex = row[2]
        if hash_hex in existing:
            if duplicates == "skip":
                report.duplicates_skipped += 1
                continue
            if hash_hex not in counted:
                counted.add(hash_hex)
                report.duplicates_kept += 1
        rows.append(row)
    return rows


def _store_report(dataset: Dataset, report: ImportReport) -> None:
    dataset.rows_read = report.rows_read
    dataset.rows_imported = report.rows_imported
    dataset.rows_labelled = report.rows_labelled
    dataset.rows_with_errors = report.rows_with_errors
    dataset.duplicates_skipped = report.duplicates_skipped
    dataset.duplicates_kept = report.duplicates_kept
    dataset.row_errors = report.row_errors
