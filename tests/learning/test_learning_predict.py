"""Batch prediction of CSV and JSON Lines files, and resolving a model by path or project."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from learning_helpers import LABELS, corpus, create_project

from labelandlearn.errors import ImportFormatError, NotFoundError, ValidationError
from labelandlearn.learning.base import TextModel, get_recipe
from labelandlearn.learning.predict import predict_file, resolve_model
from labelandlearn.learning.training import train_project
from labelandlearn.storage.db import Database

ROWS = [
    {"id": "001", "text": "price rally moon ethereum"},
    {"id": "002", "text": "follow for giveaway click link"},
    {"id": "003", "text": "scam hack lost funds"},
]


@pytest.fixture(scope="module")
def model() -> TextModel:
    texts, labels = corpus()
    return get_recipe("tfidf-linear").fit_model(LABELS, texts, labels)


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_predict_csv_keeps_columns(model: TextModel, tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", ROWS)
    stats = predict_file(model, source, tmp_path / "out.csv", batch_size=2)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert stats.rows_read == 3 and stats.rows_written == 3
    assert list(rows[0]) == ["id", "text", "predicted_label"] + [f"proba_{name}" for name in LABELS]
    assert rows[0]["id"] == "001"
    assert [row["predicted_label"] for row in rows] == ["positive", "useless", "negative"]
    assert sum(float(rows[0][f"proba_{name}"]) for name in LABELS) == pytest.approx(1.0, abs=1e-4)


def test_predict_keep_filters_rows(model: TextModel, tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", ROWS)
    stats = predict_file(model, source, tmp_path / "out.jsonl", keep={"useless"})
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert stats.rows_read == 3 and stats.rows_written == 1
    assert json.loads(lines[0])["id"] == "002"
    assert stats.label_counts == {"negative": 1, "useless": 1, "positive": 1}


def test_predict_jsonl_in_json_file(model: TextModel, tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text("\n".join(json.dumps(row) for row in ROWS) + "\n", encoding="utf-8")
    steps: list[float] = []
    predict_file(model, source, tmp_path / "out.jsonl", progress=lambda f, m: steps.append(f))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[2]["predicted_label"] == "negative"
    assert set(rows[2]) >= {"id", "text", "proba_negative"}
    assert steps and steps[-1] == pytest.approx(1.0)


def test_predict_rejects_json_array(model: TextModel, tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text(json.dumps(ROWS), encoding="utf-8")
    with pytest.raises(ImportFormatError, match="JSON Lines"):
        predict_file(model, source, tmp_path / "out.csv")


def test_predict_missing_text_column(model: TextModel, tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", [{"body": "x", "id": "1"}])
    with pytest.raises(ValidationError, match=r"'text' not found; columns are: body, id"):
        predict_file(model, source, tmp_path / "out.csv")


def test_predict_unknown_keep_label(model: TextModel, tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", ROWS)
    with pytest.raises(ValidationError, match="unknown labels"):
        predict_file(model, source, tmp_path / "out.csv", keep={"spam"})


def test_predict_refuses_input_as_output(model: TextModel, tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", ROWS)
    before = source.read_bytes()
    with pytest.raises(ValidationError, match=r"is the input file; write the predictions"):
        predict_file(model, source, tmp_path / "." / "in.csv")
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"id,text\n", "has no rows"), (b"id,text\n\n\n", "has no rows")],
)
def test_predict_rejects_file_without_rows(
    model: TextModel, tmp_path: Path, content: bytes, message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(content)
    with pytest.raises(ImportFormatError, match=message):
        predict_file(model, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    assert list(tmp_path.iterdir()) == [source]


def test_predict_failure_keeps_old_output(model: TextModel, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,fine\n2,"never closed\n3,more\n', encoding="utf-8")
    target = tmp_path / "out.csv"
    target.write_text("earlier output\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match="starts on line 3 is never closed"):
        predict_file(model, source, target, batch_size=1)
    assert target.read_text(encoding="utf-8") == "earlier output\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_predict_reads_cp1252(model: TextModel, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes("id,text\n1,café crème price rally\n".encode("cp1252"))
    stats = predict_file(model, source, tmp_path / "out.csv")
    assert stats.rows_read == 1
    assert "café crème" in (tmp_path / "out.csv").read_text(encoding="utf-8")


def test_predict_rejects_binary_file(model: TextModel, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n1,\x00\x01\x02binary\n")
    with pytest.raises(ImportFormatError, match="not a text file; predict reads CSV and JSON"):
        predict_file(model, source, tmp_path / "out.csv")


def test_predict_output_folder_missing(model: TextModel, tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", [{"text": "eth price"}])
    target = tmp_path / "missing" / "out.csv"
    with pytest.raises(ValidationError, match=f"the folder {tmp_path / 'missing'} does not"):
        predict_file(model, source, target)


def test_resolve_model_from_file(model: TextModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "m.llmodel")
    assert resolve_model(None, str(path)).labels == LABELS
    with pytest.raises(NotFoundError, match="not found"):
        resolve_model(None, str(tmp_path / "missing.llmodel"))


def test_resolve_model_from_project(sqlite_db: Database) -> None:
    texts, labels = corpus(per_class=6)
    project_id = create_project(sqlite_db, texts, list(labels), name="tweets")
    with pytest.raises(NotFoundError, match="no trained model"):
        resolve_model(sqlite_db, "tweets")
    train_project(sqlite_db, project_id)
    assert resolve_model(sqlite_db, "tweets").labels == LABELS
    assert resolve_model(sqlite_db, str(project_id)).labels == LABELS
    with pytest.raises(NotFoundError, match="neither a model file nor a project"):
        resolve_model(sqlite_db, "other")


def test_predict_counts_empty_texts(model: TextModel, tmp_path: Path) -> None:
    rows = [{"text": "eth price"}, {"text": "   "}, {"text": ""}]
    source = _write_csv(tmp_path / "in.csv", rows)
    stats = predict_file(model, source, tmp_path / "out.csv")
    assert stats.rows_written == 3
    assert stats.empty_texts == 2
