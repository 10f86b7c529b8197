"""Batch prediction over large CSV or JSON Lines files, streamed in batches.

Each output row is the input row (all its columns) plus ``predicted_label`` and one
``proba_<label>`` column per label. ``keep`` writes only rows predicted as those labels, which
turns a model into a filter (for example a spam filter).
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import sqlalchemy as sa

from labelandlearn.errors import ImportFormatError, NotFoundError, ValidationError
from labelandlearn.ingest.encoding import detect_encoding
from labelandlearn.ingest.readers import RecordedLines, check_quotes_closed
from labelandlearn.learning.base import ProgressCallback, TextModel
from labelandlearn.learning.scoring import load_current_model
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Project

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
# Fields can hold long texts; the csv module's default limit is 128 KiB.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass
class PredictStats:
    """Counts and timing of one ``predict_file`` run."""

    rows_read: int = 0
    rows_written: int = 0
    # Rows whose text is empty or blank: the model predicts them from nothing.
    empty_texts: int = 0
    seconds: float = 0.0
    label_counts: dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


def detect_format(path: Path) -> str:
    """Return "jsonl" or "csv": JSON Lines when the first non-blank character is ``{``."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "jsonl"
    if path.suffix.lower() in JSONL_SUFFIXES and head.startswith(b"["):
        raise ImportFormatError(
            f"{path} holds one JSON array; predict streams JSON Lines (one object per line) "
            "or CSV. Convert the file to JSON Lines."
        )
    return "csv"


def _csv_delimiter(path: Path, encoding: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    with path.open(encoding=encoding, newline="") as handle:
        sample = handle.read(65536)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _read_rows(
    path: Path, file_format: str, handle: IO[str], encoding: str
) -> tuple[list[str] | None, Iterator[dict[str, Any]]]:
    """Return (CSV column names or None for JSON Lines, iterator of rows)."""
    if file_format == "jsonl":
        return None, _jsonl_rows(path, handle)
    delimiter = _csv_delimiter(path, encoding)
    lines = RecordedLines(handle)
    reader = csv.DictReader(lines, delimiter=delimiter)
    columns = list(reader.fieldnames or [])
    lines.take()
    return columns, _csv_rows(path, reader, lines, delimiter)


def _csv_rows(
    path: Path, reader: csv.DictReader[str], lines: RecordedLines, delimiter: str
) -> Iterator[dict[str, Any]]:
    last: list[str] = []
    for row in reader:
        last = lines.take()
        yield row
    check_quotes_closed(last, delimiter, reader.line_num - len(last) + 1, path.name)


def _jsonl_rows(path: Path, handle: IO[str]) -> Iterator[dict[str, Any]]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{path} line {line_number}: invalid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise ImportFormatError(f"{path} line {line_number}: expected a JSON object")
        yield row


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _texts(batch: list[dict[str, Any]], text_column: str, columns: list[str] | None) -> list[str]:
    if text_column not in batch[0]:
        found = ", ".join(columns if columns is not None else list(batch[0]))
        raise ValidationError(
            f"text column {text_column!r} not found; columns are: {found}; pass --text-column"
        )
    return ["" if row.get(text_column) is None else str(row.get(text_column)) for row in batch]


def _counted_texts(texts: list[str], stats: PredictStats) -> list[str]:
    stats.empty_texts += sum(1 for text in texts if not text.strip())
    return texts


class _Writer:
    """Writes rows with their predictions as CSV or JSON Lines, one batch per call."""

    def __init__(
        self, handle: IO[str], file_format: str, columns: list[str] | None, labels: list[str]
    ):
        self.handle = handle
        self.file_format = file_format
        self.labels = labels
        self.proba_columns = [f"proba_{label}" for label in labels]
        self._csv: Any = None
        self._columns = columns

    def write_batch(
        self, rows: list[dict[str, Any]], predicted: list[str], proba: np.ndarray
    ) -> None:
        """Write each row with its predicted label and probabilities rounded to 6 decimals."""
        if not rows:
            return
        width = len(self.labels)
        flat = [round(value, 6) for value in proba.ravel().tolist()]
        rounded = [flat[i : i + width] for i in range(0, len(flat), width)]
        if self.file_format == "jsonl":
            self._write_jsonl(rows, predicted, rounded)
            return
        if self._csv is None:
            self._columns = self._columns if self._columns is not None else list(rows[0])
            self._csv = csv.writer(self.handle)
            self._csv.writerow(self._columns + ["predicted_label"] + self.proba_columns)
        columns = self._columns
        assert columns is not None
        # Missing values are written empty, as csv.DictWriter does; extra keys are ignored.
        self._csv.writerows(
            [row.get(column) for column in columns] + [label] + values
            for row, label, values in zip(rows, predicted, rounded, strict=True)
        )

    def _write_jsonl(
        self, rows: list[dict[str, Any]], predicted: list[str], rounded: list[list[float]]
    ) -> None:
        lines = []
        for row, label, values in zip(rows, predicted, rounded, strict=True):
            out = dict(row)
            out["predicted_label"] = label
            out.update(zip(self.proba_columns, values, strict=True))
            lines.append(json.dumps(out, ensure_ascii=False) + "\n")
        self.handle.write("".join(lines))


def predict_file(
    model: TextModel,
    input_path: str | Path,
    output_path: str | Path,
    *,
    text_column: str = "text",
    keep: set[str] | None = None,
    batch_size: int = 2000,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> PredictStats:
    """Predict every row of a CSV or JSON Lines file and write the rows with their predictions.

    The input format is detected from the content; the output format follows the output
    file's extension (``.jsonl``/``.ndjson``/``.json`` for JSON Lines, CSV otherwise).
    ``workers`` processes compute features in parallel (default: the CPU count, at most 4;
    1 runs everything in this process); they start only once a file has more than two batches.
    ``progress`` receives the fraction of input bytes read.
    """
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise NotFoundError(f"input file {source} not found")
    if target.exists() and os.path.samefile(source, target):
        raise ValidationError(
            f"--output {target} is the input file; write the predictions to another file"
        )
    if keep is not None and (unknown := set(keep) - set(model.labels)):
        raise ValidationError(
            f"--keep names unknown labels {sorted(unknown)}; the model's labels are: "
            f"{', '.join(model.labels)}"
        )
    if not target.parent.is_dir():
        raise ValidationError(
            f"--output {target}: the folder {target.parent} does not exist; create it or "
            "write to another folder"
        )
    if source.stat().st_size == 0:
        raise ImportFormatError(f"{source} is empty; give a CSV or JSON Lines file with rows")
    # A UTF-8 byte order mark comes back as "utf-8-sig", which skips it.
    try:
        encoding = detect_encoding(source, source.name)
    except ImportFormatError as exc:
        # The import's message lists formats that predict does not read.
        raise ImportFormatError(
            f"{source} is not a text file; predict reads CSV and JSON Lines files"
        ) from exc
    input_format = detect_format(source)
    output_format = "jsonl" if target.suffix.lower() in JSONL_SUFFIXES else "csv"
    stats = PredictStats(label_counts={label: 0 for label in model.labels})
    total_bytes = max(1, source.stat().st_size)
    started = time.perf_counter()
    # Written beside the target and renamed at the end, so a failed run leaves no half file
    # and an existing output stays as it was.
    partial = target.with_name(f".{target.name}.partial")
    try:
        with (
            source.open(encoding=encoding, newline="") as reading,
            partial.open("w", encoding="utf-8", newline="") as writing,
            _Predictor(
                model, workers if workers is not None else min(4, os.cpu_count() or 1)
            ) as predictor,
        ):
            columns, rows = _read_rows(source, input_format, reading, encoding)
            writer = _Writer(writing, output_format, columns, model.labels)
            batches = (
                (batch, _counted_texts(_texts(batch, text_column, columns), stats))
                for batch in _batches(rows, batch_size)
            )
            for batch, proba in predictor.map(batches):
                _write_batch(model, batch, proba, keep, writer, stats)
                if progress is not None:
                    # The binary position includes read-ahead, so this slightly overstates.
                    done = reading.buffer.tell() / total_bytes  # type: ignore[attr-defined]
                    progress(min(1.0, done), f"{stats.rows_read} rows")
        if stats.rows_read == 0:
            raise ImportFormatError(f"{source} has no rows to predict, only a header or blanks")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    stats.seconds = time.perf_counter() - started
    logger.info(
        "predicted file=%s rows=%d written=%d seconds=%.2f rows_per_second=%.0f",
        source.name,
        stats.rows_read,
        stats.rows_written,
        stats.seconds,
        stats.rows_per_second,
    )
    return stats


_worker_model: TextModel | None = None


def _start_worker(model_bytes: bytes) -> None:
    global _worker_model
    _worker_model = TextModel.from_bytes(model_bytes)


def _worker_predict(texts: list[str]) -> np.ndarray:
    assert _worker_model is not None
    return _worker_model.predict_proba(texts)


class _Predictor:
    """Predicts batches in order, in this process or in a pool of worker processes."""

    def __init__(self, model: TextModel, workers: int) -> None:
        self.model = model
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _Predictor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _start_pool(self) -> ProcessPoolExecutor:
        # Fork starts workers in milliseconds; spawn is the fallback where fork is missing.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self.model.to_bytes(),),
        )

    def map(
        self, batches: Iterator[tuple[list[dict[str, Any]], list[str]]]
    ) -> Iterator[tuple[list[dict[str, Any]], np.ndarray]]:
        pending: deque[tuple[list[dict[str, Any]], Future[np.ndarray]]] = deque()
        for number, (batch, texts) in enumerate(batches):
            if self.workers == 1 or number < 2:
                yield batch, self.model.predict_proba(texts)
                continue
            if self._pool is None:
                self._pool = self._start_pool()
            pending.append((batch, self._pool.submit(_worker_predict, texts)))
            # Bounded read-ahead keeps memory flat on files of any size.
            if len(pending) >= 2 * self.workers:
                done_batch, future = pending.popleft()
                yield done_batch, future.result()
        while pending:
            done_batch, future = pending.popleft()
            yield done_batch, future.result()


def _write_batch(
    model: TextModel,
    batch: list[dict[str, Any]],
    proba: np.ndarray,
    keep: set[str] | None,
    writer: _Writer,
    stats: PredictStats,
) -> None:
    winners = proba.argmax(axis=1)
    stats.rows_read += len(batch)
    counts = np.bincount(winners, minlength=len(model.labels))
    for label, count in zip(model.labels, counts.tolist(), strict=True):
        stats.label_counts[label] += count
    if keep is not None:
        wanted = np.array([label in keep for label in model.labels])
        chosen = np.flatnonzero(wanted[winners])
        batch = [batch[i] for i in chosen.tolist()]
        winners, proba = winners[chosen], proba[chosen]
    writer.write_batch(batch, [model.labels[i] for i in winners.tolist()], proba)
    stats.rows_written += len(batch)


def resolve_model(db: Database | None, model_or_project: str) -> TextModel:
    """Load a model from a model file path, or the current model of a project (name or id)."""
    path = Path(model_or_project)
    if path.is_file():
        return TextModel.load(path)
    if db is None:
        raise NotFoundError(f"model file {model_or_project} not found")
    with db.session() as session:
        condition = Project.name == model_or_project
        if model_or_project.isdigit():
            condition = sa.or_(condition, Project.id == int(model_or_project))
        project_id = session.scalar(sa.select(Project.id).where(condition).limit(1))
    if project_id is None:
        raise NotFoundError(
            f"{model_or_project!r} is neither a model file nor a project name or id"
        )
    loaded = load_current_model(db, project_id)
    if loaded is None:
        raise NotFoundError(
            f"project {model_or_project!r} has no trained model yet; train it first"
        )
    return loaded[0]
