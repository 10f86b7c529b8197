"""import_file against SQLite and PostgreSQL: counts, row errors, duplicates and atomicity."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import create_project
from openpyxl import Workbook
from sqlalchemy import func, select

from labelandlearn.errors import ImportFormatError, NotFoundError, ValidationError
from labelandlearn.ingest import importer
from labelandlearn.ingest.bulk import ItemInserter
from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Dataset, Item, Label
from shared_data import dataset_path

RATING_MAP = {"-1": "negative", "0": "useless", "1": "positive"}
TEXT_ONLY = ColumnMapping("text")


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def count(db: Database, model: type, **filters: object) -> int:
    with db.session() as session:
        query = select(func.count()).select_from(model).filter_by(**filters)
        return int(session.scalar(query) or 0)


def label_counts(db: Database, project_id: int) -> Counter[str]:
    with db.session() as session:
        rows = session.execute(
            select(Label.name, func.count(Item.id))
            .join(Item, Item.label_id == Label.id)
            .where(Item.project_id == project_id)
            .group_by(Label.name)
        )
        return Counter({name: number for name, number in rows})


def expected_first_occurrences(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV whose text was not seen before, read with the standard csv module."""
    seen: set[str] = set()
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["text"] in seen:
                continue
            seen.add(row["text"])
            rows.append(row)
    return rows


def test_real_ethereum_tweets(db: Database) -> None:
    project_id = create_project(db)
    labelled_path = dataset_path("ethereum-tweets", "labelled.csv")
    unlabelled_path = dataset_path("ethereum-tweets", "unlabelled.csv")
    labelled_rows = expected_first_occurrences(labelled_path)
    mapping = ColumnMapping("text", label_column="rating", label_map=RATING_MAP)

    report = import_file(db, project_id, labelled_path, None, mapping)

    assert report.rows_read == 5590
    assert report.rows_with_errors == 0
    assert report.rows_imported == len(labelled_rows)
    assert report.duplicates_skipped == 5590 - len(labelled_rows)
    assert report.rows_labelled == len(labelled_rows)
    expected_labels = Counter(RATING_MAP[row["rating"]] for row in labelled_rows)
    assert label_counts(db, project_id) == expected_labels
    assert count(db, Answer, project_id=project_id, source="import") == len(labelled_rows)

    known = {row["text"] for row in labelled_rows}
    new_texts = {row["text"] for row in expected_first_occurrences(unlabelled_path)} - known
    second = import_file(db, project_id, unlabelled_path, None, TEXT_ONLY)

    assert second.rows_read == 502
    assert second.rows_imported == len(new_texts)
    assert second.duplicates_skipped == 502 - len(new_texts)
    assert second.rows_labelled == 0
    assert count(db, Item, project_id=project_id) == len(labelled_rows) + len(new_texts)
    assert count(db, Item, project_id=project_id, label_id=None) == len(new_texts)


def test_items_answers_and_metadata(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_csv(
        tmp_path / "t.csv",
        [
            ["id", "text", "rating", "date"],
            ["00123", "ETH breaks out", "1", "04/01/2018 21:18"],
            ["00124", "free airdrop", "0", ""],
            ["00125", "no label yet", "", "05/01/2018 10:00"],
        ],
    )
    mapping = ColumnMapping("text", id_column="id", label_column="rating", label_map=RATING_MAP)
    report = import_file(db, project_id, path, "tweets.csv", mapping)

    assert (report.rows_imported, report.rows_labelled) == (3, 2)
    with db.session() as session:
        items = session.scalars(select(Item).order_by(Item.position)).all()
        labels = {label.id: label.name for label in session.scalars(select(Label))}
        answers = session.scalars(select(Answer)).all()
        dataset = session.get(Dataset, report.dataset_id)
        assert dataset is not None
        assert (dataset.filename, dataset.file_format, dataset.rows_imported) == (
            "tweets.csv",
            "csv",
            3,
        )
    assert [item.external_id for item in items] == ["00123", "00124", "00125"]
    assert [item.position for item in items] == [0, 1, 2]
    assert items[0].meta == {"date": "04/01/2018 21:18"}
    assert items[1].meta == {"date": None}
    assert [labels[item.label_id] if item.label_id else None for item in items] == [
        "positive",
        "useless",
        None,
    ]
    assert [item.done for item in items] == [True, True, False]
    assert items[0].labelled_at is not None
    assert items[2].labelled_at is None
    assert items[0].text_hash == hashlib.sha1(b"ETH breaks out").hexdigest()
    assert len(answers) == 2
    assert {answer.item_id for answer in answers} == {items[0].id, items[1].id}
    assert all(answer.source == "import" and answer.user_id is None for answer in answers)
    assert all(len(answer.id) == 36 for answer in answers)
    assert {answer.label_id for answer in answers} == {items[0].label_id, items[1].label_id}


def test_positions_continue_and_duplicates_across_files(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    first = write_csv(tmp_path / "a.csv", [["text"], ["one"], ["two"], ["one"]])
    second = write_csv(tmp_path / "b.csv", [["text"], ["two"], ["three"]])

    report = import_file(db, project_id, first, None, TEXT_ONLY)
    assert (report.rows_imported, report.duplicates_skipped) == (2, 1)
    report = import_file(db, project_id, second, None, TEXT_ONLY)
    assert (report.rows_imported, report.duplicates_skipped) == (1, 1)

    with db.session() as session:
        rows = session.execute(select(Item.text, Item.position).order_by(Item.position)).all()
    assert [tuple(row) for row in rows] == [("one", 0), ("two", 1), ("three", 2)]


def test_duplicates_kept_when_asked(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_csv(tmp_path / "a.csv", [["text"], ["one"], ["one"], ["two"]])
    import_file(db, project_id, path, None, TEXT_ONLY)

    report = import_file(db, project_id, path, None, TEXT_ONLY, duplicates="keep")

    assert report.rows_imported == 3
    assert report.duplicates_kept == 3
    assert report.duplicates_skipped == 0
    assert count(db, Item, project_id=project_id) == 5


def test_row_errors_with_line_numbers(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = tmp_path / "errors.csv"
    path.write_text(
        'text,rating\n"multi\nline",1\n  ,0\nfine,7\n,1\nok,positive\nlast,-1.0\n',
        encoding="utf-8",
    )
    mapping = ColumnMapping("text", label_column="rating", label_map=RATING_MAP)
    report = import_file(db, project_id, path, None, mapping)

    assert report.rows_read == 6
    assert report.rows_imported == 3
    assert report.rows_with_errors == 3
    lines = [error["line"] for error in report.row_errors]
    assert lines == [4, 5, 6]
    assert report.row_errors[0]["reason"] == "text column 'text' is empty"
    assert (
        "label '7' in column 'rating' is not a label of this project"
        in report.row_errors[1]["reason"]
    )
    assert "negative, useless, positive" in report.row_errors[1]["reason"]
    assert label_counts(db, project_id) == Counter({"positive": 2, "negative": 1})
    with db.session() as session:
        dataset = session.get(Dataset, report.dataset_id)
        assert dataset is not None
        assert dataset.rows_with_errors == 3
        assert dataset.row_errors == report.row_errors


def test_stored_row_errors_are_capped(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = create_project(db)
    monkeypatch.setattr(importer, "MAX_STORED_ROW_ERRORS", 5)
    path = write_csv(tmp_path / "e.csv", [["text", "n"], *[["", str(i)] for i in range(12)]])
    report = import_file(db, project_id, path, None, TEXT_ONLY)
    assert report.rows_with_errors == 12
    assert len(report.row_errors) == 5


def test_missing_text_column_lists_columns(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_csv(tmp_path / "a.csv", [["body", "category"], ["hello", "x"]])
    with pytest.raises(ImportFormatError) as raised:
        import_file(db, project_id, path, None, TEXT_ONLY)
    message = str(raised.value)
    assert "text column 'text' not found" in message
    assert "columns are: body, category" in message
    assert "text_column" in message
    assert count(db, Dataset) == 0


def test_label_map_empty_name_imports_unlabelled(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    rows = [["text", "rating"], ["bad news", "-1"], ["spam spam", "0"], ["good news", "1.0"]]
    path = write_csv(tmp_path / "a.csv", rows)
    # "0" maps to no label; "1" reaches "1.0" as the same number.
    mapping = ColumnMapping(
        "text", label_column="rating", label_map={"-1": "negative", "0": "", "1": ""}
    )

    report = import_file(db, project_id, path, None, mapping)

    assert report.rows_with_errors == 0
    assert report.rows_imported == 3
    assert report.rows_labelled == 1
    assert label_counts(db, project_id) == Counter({"negative": 1})


def test_label_map_to_unknown_label_rejected(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_csv(tmp_path / "a.csv", [["text", "rating"], ["hello", "1"]])
    mapping = ColumnMapping("text", label_column="rating", label_map={"1": "great"})
    with pytest.raises(ValidationError, match="'great', which is not a label of this project"):
        import_file(db, project_id, path, None, mapping)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"text\n", "only a header row"), (b"\x00\x01binary", "binary file")],
)
def test_bad_files_import_nothing(
    db: Database, tmp_path: Path, content: bytes, message: str
) -> None:
    project_id = create_project(db)
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFormatError, match=message):
        import_file(db, project_id, path, None, TEXT_ONLY)
    assert count(db, Dataset) == 0


def test_unknown_project_and_option(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_csv(tmp_path / "a.csv", [["text"], ["hello"]])
    with pytest.raises(NotFoundError, match="project 999999 not found"):
        import_file(db, 999_999, path, None, TEXT_ONLY)
    with pytest.raises(ValidationError, match="duplicates must be one of skip, keep"):
        import_file(db, project_id, path, None, TEXT_ONLY, duplicates="drop")  # type: ignore[arg-type]


def test_failure_mid_import_leaves_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = create_project(db)
    existing = write_csv(tmp_path / "old.csv", [["text", "rating"], ["kept", "1"]])
    import_file(db, project_id, existing, None, ColumnMapping("text", None, "rating", RATING_MAP))

    monkeypatch.setattr(importer, "BATCH_ROWS", 10)
    original_insert = ItemInserter.insert
    calls = []

    def insert_then_fail(self: ItemInserter, rows: list[tuple[object, ...]]) -> None:
        calls.append(len(rows))
        if len(calls) == 3:
            raise RuntimeError("disk full")
        original_insert(self, rows)

    monkeypatch.setattr(ItemInserter, "insert", insert_then_fail)
    rows = [["text", "rating"], *[[f"tweet {index}", "0"] for index in range(45)]]
    path = write_csv(tmp_path / "new.csv", rows)

    with pytest.raises(RuntimeError, match="disk full"):
        import_file(db, project_id, path, None, ColumnMapping("text", None, "rating", RATING_MAP))

    assert calls == [10, 10, 10]
    assert count(db, Dataset) == 1
    assert count(db, Item) == 1
    assert count(db, Answer) == 1


def test_progress_reported(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_csv(tmp_path / "a.csv", [["text"], *[[f"t{index}"] for index in range(50)]])
    calls: list[tuple[float, str]] = []

    def progress(fraction: float, message: str = "", *, force: bool = False) -> None:
        calls.append((fraction, message))

    import_file(db, project_id, path, None, TEXT_ONLY, progress=progress)
    fractions = [fraction for fraction, _message in calls]
    assert fractions == sorted(fractions)
    assert calls[-1] == (1.0, "imported 50 rows")


def test_json_lines_named_json(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = tmp_path / "tweets.json"
    lines = [{"text": "a", "rating": 1, "lang": "en"}, {"text": "b", "rating": -1}]
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    mapping = ColumnMapping("text", label_column="rating", label_map=RATING_MAP)
    report = import_file(db, project_id, path, None, mapping)
    assert (report.file_format, report.rows_imported, report.rows_labelled) == ("jsonl", 2, 2)
    assert label_counts(db, project_id) == Counter({"positive": 1, "negative": 1})


def test_parquet_import(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = tmp_path / "tweets.parquet"
    table = pa.table(
        {"text": ["a", "b", "", "c"], "rating": [1, 0, 1, None], "likes": [3, None, 1, 2]}
    )
    pq.write_table(table, path)
    mapping = ColumnMapping("text", label_column="rating", label_map=RATING_MAP)
    report = import_file(db, project_id, path, None, mapping)
    assert (report.file_format, report.rows_imported, report.rows_labelled) == ("parquet", 3, 2)
    assert report.row_errors == [{"line": 3, "reason": "text column 'text' is empty"}]
    with db.session() as session:
        metas = session.scalars(select(Item.meta).order_by(Item.position)).all()
    assert metas == [{"likes": "3"}, {"likes": None}, {"likes": "2"}]


def test_excel_import(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    workbook = Workbook()
    sheet = workbook.active
    for row in (["text", "label", "id"], ["a", "positive", "007"], ["b", "useless", 8]):
        sheet.append(row)
    path = tmp_path / "tweets.xlsx"
    workbook.save(path)
    mapping = ColumnMapping("text", id_column="id", label_column="label")
    report = import_file(db, project_id, path, None, mapping)
    assert (report.file_format, report.rows_imported, report.rows_labelled) == ("xlsx", 2, 2)
    with db.session() as session:
        ids = session.scalars(select(Item.external_id).order_by(Item.position)).all()
    assert ids == ["007", "8"]
