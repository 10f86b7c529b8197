"""Export of labelled items: columns, who and when, formula neutralisation, re-import."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from labelandlearn.errors import NotFoundError, ValidationError
from labelandlearn.export import export_labelled, neutralise_formula
from labelandlearn.export.jobs import export_filename, run_export_job
from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.jobs import base as jobs_base
from labelandlearn.jobs.base import JobContext
from labelandlearn.settings import get_settings
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Job, Label, Project, User

RATING_MAP = {"-1": "negative", "0": "useless", "1": "positive"}
TWEETS = [
    ["id", "text", "rating", "date", "likes"],
    ["00123", "ETH breaks out", "1", "04/01/2018 21:18", "5"],
    ["00124", 'free "airdrop", click\nnow', "0", "", "-3"],
    ["00125", '=HYPERLINK("http://x")', "-1", "05/01/2018", "+7"],
    ["00126", "not labelled yet", "", "06/01/2018", "1"],
    ["00127", "@everyone buy", "0", "07/01/2018", "@2"],
]


def create_project(db: Database, name: str, labels: tuple[str, ...]) -> int:
    with db.session() as session:
        project = Project(
            name=name,
            labels=[
                Label(name=label, key=str(index + 1), position=index)
                for index, label in enumerate(labels)
            ],
        )
        session.add(project)
        session.flush()
        return project.id


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def imported_project(db: Database, tmp_path: Path) -> int:
    project_id = create_project(db, "tweets", ("negative", "useless", "positive"))
    mapping = ColumnMapping("text", id_column="id", label_column="rating", label_map=RATING_MAP)
    import_file(db, project_id, write_csv(tmp_path / "in.csv", TWEETS), None, mapping)
    return project_id


def item_labels(db: Database, project_id: int) -> dict[str, str | None]:
    with db.session() as session:
        rows = session.execute(
            select(Item.text, Label.name)
            .outerjoin(Label, Label.id == Item.label_id)
            .where(Item.project_id == project_id)
        )
        return {text: name for text, name in rows}


def test_csv_columns_and_values(db: Database, tmp_path: Path) -> None:
    project_id = imported_project(db, tmp_path)
    out = tmp_path / "out.csv"

    rows_written = export_labelled(db, project_id, out, "csv")

    assert rows_written == 4
    with out.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert header == ["id", "text", "date", "likes", "label", "labelled_by", "labelled_at"]
    assert [row["id"] for row in rows] == ["00123", "00124", "00125", "00127"]
    assert rows[0]["text"] == "ETH breaks out"
    assert rows[0]["label"] == "positive"
    assert rows[0]["labelled_by"] == "import"
    assert datetime.fromisoformat(rows[0]["labelled_at"]).tzinfo is not None
    assert rows[0]["labelled_at"].endswith("Z")
    assert rows[1]["text"] == 'free "airdrop", click\nnow'
    assert rows[1]["date"] == ""


def test_csv_neutralises_formulas(db: Database, tmp_path: Path) -> None:
    project_id = imported_project(db, tmp_path)
    out = tmp_path / "out.csv"
    export_labelled(db, project_id, out, "csv")
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["likes"] == "'-3"
    assert rows[2]["text"] == '\'=HYPERLINK("http://x")'
    assert rows[2]["likes"] == "'+7"
    assert rows[3]["text"] == "'@everyone buy"
    assert rows[3]["likes"] == "'@2"
    assert rows[0]["likes"] == "5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("a=1", "a=1"),
        ("", ""),
    ],
)
def test_neutralise_formula(value: str, expected: str) -> None:
    assert neutralise_formula(value) == expected


def test_jsonl_keeps_values_as_they_are(db: Database, tmp_path: Path) -> None:
    project_id = imported_project(db, tmp_path)
    buffer = io.BytesIO()

    rows_written = export_labelled(db, project_id, buffer, "jsonl")

    lines = [json.loads(line) for line in buffer.getvalue().decode("utf-8").splitlines()]
    assert rows_written == len(lines) == 4
    assert not buffer.closed
    assert list(lines[0]) == ["id", "text", "date", "likes", "label", "labelled_by", "labelled_at"]
    assert lines[2]["text"] == '=HYPERLINK("http://x")'
    assert lines[1]["date"] is None
    assert lines[1]["likes"] == "-3"
    assert lines[3]["label"] == "useless"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_reimports_to_same_labels(db: Database, tmp_path: Path, fmt: str) -> None:
    project_id = imported_project(db, tmp_path)
    out = tmp_path / f"out.{fmt}"
    export_labelled(db, project_id, out, fmt)

    copy_id = create_project(db, "copy", ("negative", "useless", "positive"))
    mapping = ColumnMapping("text", id_column="id", label_column="label")
    report = import_file(db, copy_id, out, None, mapping)

    assert report.rows_with_errors == 0
    assert report.rows_labelled == 4
    original = {text: label for text, label in item_labels(db, project_id).items() if label}
    copied = item_labels(db, copy_id)
    if fmt == "csv":
        # Neutralised cells come back with their apostrophe: only the text changes.
        copied = {text.removeprefix("'"): label for text, label in copied.items()}
    assert copied == original


def test_label_names_that_look_like_formulas_round_trip(db: Database, tmp_path: Path) -> None:
    labels = ("-1", "0", "+1", "=eq")
    project_id = create_project(db, "signed", labels)
    source = write_csv(
        tmp_path / "in.csv", [["text", "label"], ["a", "-1"], ["b", "+1"], ["c", "=eq"], ["d", "0"]]
    )
    import_file(db, project_id, source, None, ColumnMapping("text", label_column="label"))
    out = tmp_path / "out.csv"
    export_labelled(db, project_id, out, "csv")

    copy_id = create_project(db, "signed copy", labels)
    report = import_file(db, copy_id, out, None, ColumnMapping("text", label_column="label"))

    assert report.rows_with_errors == 0
    assert item_labels(db, copy_id) == {"a": "-1", "b": "+1", "c": "=eq", "d": "0"}


def test_labelled_by_user_and_latest_answer(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db, "people", ("no", "yes"))
    source = write_csv(tmp_path / "in.csv", [["text"], ["first"], ["second"]])
    import_file(db, project_id, source, None, ColumnMapping("text"))
    early = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    late = datetime(2024, 3, 2, 8, 30, 15, tzinfo=UTC)
    with db.session() as session:
        alice, bob = User(username="alice"), User(username="bob")
        session.add_all([alice, bob])
        labels = {label.name: label.id for label in session.scalars(select(Label))}
        first = session.scalar(select(Item).where(Item.text == "first"))
        assert first is not None
        session.flush()
        session.add_all(
            [
                Answer(
                    project_id=project_id,
                    item_id=first.id,
                    user_id=alice.id,
                    label_id=labels["no"],
                    created_at=early,
                ),
                Answer(
                    project_id=project_id,
                    item_id=first.id,
                    user_id=bob.id,
                    label_id=labels["yes"],
                    created_at=late,
                ),
            ]
        )
        first.label_id = labels["yes"]
        first.labelled_at = late

    buffer = io.BytesIO()
    assert export_labelled(db, project_id, buffer, "jsonl") == 1
    row = json.loads(buffer.getvalue())
    assert row["text"] == "first"
    assert row["label"] == "yes"
    assert row["labelled_by"] == "bob"
    assert row["labelled_at"] == "2024-03-02T08:30:15Z"
    assert "id" not in row


def test_metadata_key_clashing_with_export_column(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db, "clash", ("a", "b"))
    source = write_csv(tmp_path / "in.csv", [["text", "label", "grade"], ["x", "keep me", "a"]])
    import_file(db, project_id, source, None, ColumnMapping("text", label_column="grade"))
    buffer = io.BytesIO()
    export_labelled(db, project_id, buffer, "jsonl")
    row = json.loads(buffer.getvalue())
    assert row["label_original"] == "keep me"
    assert row["label"] == "a"


def test_export_errors(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db, "empty", ("a", "b"))
    with pytest.raises(ValidationError, match="export format 'xml' is not supported"):
        export_labelled(db, project_id, tmp_path / "x.xml", "xml")
    with pytest.raises(NotFoundError, match="project 999999 not found"):
        export_labelled(db, 999_999, tmp_path / "x.csv", "csv")
    out = tmp_path / "none.csv"
    assert export_labelled(db, project_id, out, "csv") == 0
    assert out.read_text(encoding="utf-8").strip() == "text,label,labelled_by,labelled_at"


def test_export_job_writes_into_data_folder(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LABELANDLEARN_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        project_id = imported_project(db, tmp_path)
        with db.session() as session:
            job = Job(kind="export", project_id=project_id, status="running")
            session.add(job)
            session.flush()
            job_id = job.id
        result = run_export_job(JobContext(db, job_id, project_id), {"format": "jsonl"})
    finally:
        get_settings.cache_clear()
    assert result is not None

    path = Path(result["path"])
    assert path.parent == data_dir / "exports"
    assert result["rows"] == 4
    assert result["format"] == "jsonl"
    assert path.name == result["filename"]
    assert path.name.startswith("tweets-labelled-")
    assert len(path.read_text(encoding="utf-8").splitlines()) == 4
    assert list((data_dir / "exports").iterdir()) == [path]
    assert jobs_base._HANDLERS["export"] is run_export_job


def test_export_filename_is_safe() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    name = export_filename("../Ethereum tweets (demo)", "csv", moment)
    assert name == "ethereum-tweets-demo-labelled-20240102-030405.csv"
