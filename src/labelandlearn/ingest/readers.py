"""Streaming readers that turn an import file into records of string values.

Every reader yields ``Record(line, values, error)``. ``line`` is the 1-based physical line where
the record starts in text files, and the row number in Parquet and Excel files. ``values`` maps
each column to its value as text, or None when missing or empty. ``error`` is set instead of
``values`` for a row that cannot be read, which the importer reports before going on.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

from labelandlearn.errors import ImportFormatError
from labelandlearn.ingest.json_stream import iter_json_records

# Maximum length of one CSV field. The csv module's default (128 KiB) rejects some long texts.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
PARQUET_BATCH_ROWS = 4096

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "xlsx")


@dataclass(frozen=True)
class FileInfo:
    """Sniffing result: a file's real format, encoding, delimiter and columns."""

    format: str
    encoding: str | None
    delimiter: str | None
    columns: list[str] = field(default_factory=list)
    display_name: str = ""


class RecordedLines:
    """Iterates over the lines of a text stream and keeps those of the record being read.

    ``csv.reader`` reads exactly the lines of one record before returning it, so after each
    record ``take()`` returns that record's raw lines. The delimited readers use them to tell
    a quoted field that the file never closes from a field with quoted line breaks.
    """

    def __init__(self, lines: Iterator[str] | IO[str]) -> None:
        self._lines = iter(lines)
        self._record_lines: list[str] = []

    def __iter__(self) -> RecordedLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._record_lines.append(line)
        return line

    def take(self) -> list[str]:
        lines, self._record_lines = self._record_lines, []
        return lines


def check_quotes_closed(lines: list[str], delimiter: str, start: int, display_name: str) -> None:
    """Raise ImportFormatError when ``lines``, the last record of a file, hold a quoted field
    that the file never closes.

    Python's csv module in its default, lenient mode reads such a field to the end of the file
    and returns it as one value, so the rows after a stray quote would become one text.
    """
    if len(lines) < 2:
        return
    try:
        for _ in csv.reader(lines, delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            return
        raise ImportFormatError(
            f"{display_name}: the quoted field that starts on line {start} is never closed, so "
            f"lines {start} to {start + len(lines) - 1} (the end of the file) would become one "
            "value; add the closing quote, or double the quote character if it is part of the "
            'text ("")'
        ) from None


class Record(NamedTuple):
    line: int
    values: dict[str, str | None]
    error: str | None = None


def to_text(value: Any) -> str | None:
    """Convert one cell value to the text stored for it; empty strings and NaN become None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace") or None
    return json.dumps(value, ensure_ascii=False, default=str)


def unique_column_names(raw: list[Any]) -> list[str]:
    """Strip header names, name blank ones ``column_N`` and add ``_2``, ``_3`` to repeats."""
    names: list[str] = []
    seen: set[str] = set()
    for index, value in enumerate(raw, start=1):
        base = (to_text(value) or "").strip() or f"column_{index}"
        name, suffix = base, 2
        while name in seen:
            name, suffix = f"{base}_{suffix}", suffix + 1
        seen.add(name)
        names.append(name)
    return names


def _values_from_mapping(obj: dict[str, Any]) -> dict[str, str | None]:
    return {str(key): to_text(value) for key, value in obj.items()}


def _json_type_name(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


class RecordReader:
    """An open file yielding records; ``fraction_done`` estimates progress from 0 to 1."""

    def __init__(self, path: Path, info: FileInfo) -> None:
        self.path = path
        self.info = info
        self._size = max(path.stat().st_size, 1)
        self._raw: IO[bytes] | None = None
        self._rows_done = 0
        self._rows_total: int | None = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def fraction_done(self) -> float:
        if self._rows_total:
            return min(1.0, self._rows_done / self._rows_total)
        if self._raw is not None and not self._raw.closed:
            return min(1.0, self._raw.tell() / self._size)
        return 0.0

    def __iter__(self) -> Iterator[Record]:
        readers = {
            "csv": self._iter_delimited,
            "tsv": self._iter_delimited,
            "jsonl": self._iter_json_lines,
            "json": self._iter_json,
            "parquet": self._iter_parquet,
            "xlsx": self._iter_xlsx,
        }
        try:
            reader = readers[self.info.format]
        except KeyError:
            raise ImportFormatError(
                f"unknown import format {self.info.format!r}; known formats: {', '.join(FORMATS)}"
            ) from None
        return reader()

    def _open_text(self) -> io.TextIOWrapper:
        self._raw = self.path.open("rb")
        # newline="" keeps quoted line breaks inside CSV fields as they are.
        return io.TextIOWrapper(self._raw, encoding=self.info.encoding or "utf-8", newline="")

    def _iter_delimited(self) -> Iterator[Record]:
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        delimiter = self.info.delimiter or ","
        lines = RecordedLines(self._open_text())
        reader = csv.reader(lines, delimiter=delimiter)
        columns = self.info.columns
        header_seen = False
        previous_end = 0
        last: tuple[int, list[str]] = (0, [])
        try:
            for fields in reader:
                start, previous_end = previous_end + 1, reader.line_num
                last = (start, lines.take())
                if not "".join(fields).strip():
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                yield _delimited_record(start, fields, columns)
        except csv.Error as exc:
            raise ImportFormatError(
                f"{self.info.display_name}: cannot read line {reader.line_num} as "
                f"{self.info.format.upper()}: {exc}"
            ) from None
        # Raised after the rows were handed on: the importer stores nothing of a file that
        # fails, so an import stays all or nothing.
        check_quotes_closed(last[1], delimiter, last[0], self.info.display_name)

    def _iter_json_lines(self) -> Iterator[Record]:
        text = self._open_text()
        for line_number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImportFormatError(
                    f"{self.info.display_name} is not valid JSON Lines: {exc.msg} at line "
                    f"{line_number}. Each line must hold one JSON object."
                ) from None
            yield _json_record(line_number, value)

    def _iter_json(self) -> Iterator[Record]:
        text = self._open_text()
        for line_number, value in iter_json_records(text, self.info.display_name):
            yield _json_record(line_number, value)

    def _iter_parquet(self) -> Iterator[Record]:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(self.path)
        self._rows_total = parquet.metadata.num_rows
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    self._rows_done += 1
                    yield Record(self._rows_done, _values_from_mapping(row))
        finally:
            parquet.close()

    def _iter_xlsx(self) -> Iterator[Record]:
        from openpyxl import load_workbook

        # A file object, because openpyxl rejects a path whose suffix is not .xlsx, and
        # uploads are stored under a fixed name.
        handle = open(self.path, "rb")  # noqa: SIM115 - closed in the finally below
        workbook = load_workbook(handle, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            self._rows_total = sheet.max_row
            columns = self.info.columns
            header_seen = False
            for row_number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                self._rows_done = row_number
                cells = [to_text(value) for value in row]
                if not any(cell is not None and cell.strip() for cell in cells):
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                yield _cells_record(row_number, cells, columns)
        finally:
            workbook.close()
            handle.close()


def _delimited_record(line: int, fields: list[str], columns: list[str]) -> Record:
    if len(fields) == len(columns):
        # The common case, kept to one dict comprehension because it runs once per row.
        return Record(
            line, {column: value or None for column, value in zip(columns, fields, strict=True)}
        )
    return _cells_record(
        line,
        [value or None for value in fields],
        columns,
        "; quote fields that contain the delimiter",
    )


def _cells_record(line: int, cells: list[str | None], columns: list[str], hint: str = "") -> Record:
    if any(cell is not None for cell in cells[len(columns) :]):
        return Record(
            line,
            {},
            f"row has values in {len(cells)} columns but the header has {len(columns)}{hint}",
        )
    values: dict[str, str | None] = dict.fromkeys(columns)
    values.update(zip(columns, cells, strict=False))
    return Record(line, values)


def _json_record(line: int, value: Any) -> Record:
    if isinstance(value, dict):
        return Record(line, _values_from_mapping(value))
    return Record(line, {}, f"expected a JSON object but found {_json_type_name(value)}")


def iter_records(path: Path, info: FileInfo) -> Iterator[Record]:
    """Yield every record of the file described by ``info`` (see ``sniff_file``)."""
    with RecordReader(path, info) as reader:
        yield from reader
