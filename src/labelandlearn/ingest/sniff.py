"""Detect an import file's real format from its content; the file name is only a hint.

Supported: CSV and other delimited text (``,`` ``;`` tab ``|``), JSON (an array of objects, or
an object holding one list of objects), JSON Lines, Parquet and Excel ``.xlsx``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import unicodedata
import zipfile
from pathlib import Path

from labelandlearn.errors import ImportFormatError
from labelandlearn.ingest.encoding import detect_encoding
from labelandlearn.ingest.readers import FileInfo, RecordReader, to_text, unique_column_names

logger = logging.getLogger(__name__)

SAMPLE_CHARS = 64 * 1024
SAMPLE_RECORDS = 50
JSON_COLUMN_SAMPLE = 1000
DELIMITERS = (",", ";", "\t", "|")
# Decoded text with more control characters (other than tab, CR, LF, FF) than both of these
# limits is binary data. A few of them in a short text file are tolerated.
MAX_CONTROL_SHARE = 0.1
MAX_CONTROL_CHARS = 16

_EXTENSION_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".xls": "xls",
}
_FORMAT_NAMES = {
    "csv": "CSV",
    "tsv": "TSV",
    "json": "JSON",
    "jsonl": "JSON Lines",
    "parquet": "Parquet",
    "xlsx": "Excel",
    "xls": "Excel",
}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def sniff_file(path: Path, filename: str | None = None) -> FileInfo:
    """Return the format, encoding, delimiter and columns of an import file.

    ``filename`` is the name the user gave (an upload's original name); its extension is a
    hint only. Raises ImportFormatError for an empty, binary or unsupported file.
    """
    display_name = filename or path.name
    claimed = _EXTENSION_FORMATS.get(Path(display_name).suffix.lower())
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        raise ImportFormatError(f"{display_name} is empty (0 bytes); choose a file with data.")

    if head.startswith(b"PAR1"):
        info = _sniff_parquet(path, display_name)
    elif head.startswith(b"PK\x03\x04"):
        info = _sniff_xlsx(path, display_name)
    elif head.startswith(_OLE_MAGIC):
        raise ImportFormatError(
            f"{display_name} is an old Excel .xls workbook or another OLE file; save it as "
            ".xlsx or CSV and import that."
        )
    else:
        info = _sniff_text(path, display_name, claimed)

    if claimed and claimed != info.format and {claimed, info.format} != {"csv", "tsv"}:
        logger.info(
            "%s is named like %s but contains %s; reading it as %s",
            display_name,
            _FORMAT_NAMES[claimed],
            _FORMAT_NAMES[info.format],
            _FORMAT_NAMES[info.format],
        )
    return info


def _empty_error(display_name: str, what: str) -> ImportFormatError:
    return ImportFormatError(f"{display_name} {what}; it has no rows to import.")


def _sniff_parquet(path: Path, display_name: str) -> FileInfo:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ImportFormatError(
            f"{display_name} starts like a Parquet file but cannot be read: {exc}"
        ) from None
    with parquet:
        columns = list(parquet.schema_arrow.names)
        rows = parquet.metadata.num_rows
    if rows == 0:
        raise _empty_error(display_name, "is a Parquet file with no rows")
    return FileInfo("parquet", None, None, unique_column_names(columns), display_name)


def _sniff_xlsx(path: Path, display_name: str) -> FileInfo:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    # A file object, because openpyxl rejects a path whose suffix is not .xlsx, and uploads
    # are stored under a fixed name.
    handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    try:
        workbook = load_workbook(handle, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        handle.close()
        raise ImportFormatError(
            f"{display_name} is a ZIP archive but not an Excel .xlsx workbook ({exc}); "
            "import a CSV, TSV, JSON, JSON Lines, Parquet or .xlsx file."
        ) from None
    try:
        if not workbook.worksheets:
            raise _empty_error(display_name, "has no worksheets")
        header: list[str] | None = None
        for row in workbook.worksheets[0].iter_rows(values_only=True):
            cells = [to_text(value) for value in row]
            if not any(cell is not None and cell.strip() for cell in cells):
                continue
            if header is None:
                header = unique_column_names(_trim_trailing_none(cells))
                continue
            return FileInfo("xlsx", None, None, header, display_name)
    finally:
        workbook.close()
        handle.close()
    if header is None:
        raise _empty_error(display_name, "is an empty Excel worksheet")
    raise _empty_error(display_name, "contains only a header row")


def _trim_trailing_none(cells: list[str | None]) -> list[str | None]:
    end = len(cells)
    while end and cells[end - 1] is None:
        end -= 1
    return cells[:end]


def _read_sample(path: Path, encoding: str) -> tuple[str, bool]:
    """Return the first SAMPLE_CHARS characters and whether they are the whole file."""
    with path.open(encoding=encoding, newline="") as text:
        sample = text.read(SAMPLE_CHARS)
        complete = text.read(1) == ""
    return sample, complete


def _looks_binary(sample: str) -> bool:
    controls = sum(
        1 for char in sample if char not in "\t\n\r\f" and unicodedata.category(char) == "Cc"
    )
    return controls > MAX_CONTROL_CHARS and controls > MAX_CONTROL_SHARE * len(sample)


def _sniff_text(path: Path, display_name: str, claimed: str | None) -> FileInfo:
    encoding = detect_encoding(path, display_name)
    sample, complete = _read_sample(path, encoding)
    if _looks_binary(sample):
        raise ImportFormatError(
            f"{display_name} is a binary file, not text: it is full of control characters. "
            "Import a CSV, TSV, JSON, JSON Lines, Parquet or Excel (.xlsx) file."
        )
    if not sample.strip():
        raise _empty_error(display_name, "contains only blank lines")

    if _could_be_json(sample):
        return _sniff_json(path, display_name, encoding, sample, complete)
    info = _sniff_delimited(display_name, encoding, sample, complete, claimed)
    if claimed in ("json", "jsonl", "parquet", "xlsx", "xls") and len(info.columns) < 2:
        raise ImportFormatError(
            f"{display_name} is named like a {_FORMAT_NAMES[claimed]} file but is not one; "
            "it contains plain text. Import a CSV, TSV, JSON, JSON Lines, Parquet or Excel "
            "(.xlsx) file, or rename the file to match its content."
        )
    return info


def _could_be_json(sample: str) -> bool:
    """Tell whether the text starts like a JSON array or object (a CSV header cannot)."""
    stripped = sample.lstrip()
    if not stripped or stripped[0] not in "[{":
        return False
    following = stripped[1:].lstrip()[:1]
    if stripped[0] == "{":
        return following in ('"', "}")
    return following in ("{", "[", "]", '"', "-", "t", "f", "n") or following.isdigit()


def _first_line_object(sample: str) -> bool:
    first_line = sample.lstrip().split("\n", 1)[0]
    try:
        return isinstance(json.loads(first_line), dict)
    except json.JSONDecodeError:
        return False


def _sniff_json(
    path: Path, display_name: str, encoding: str, sample: str, complete: bool
) -> FileInfo:
    """Return FileInfo for JSON Lines (one object a line) or JSON (anything else)."""
    stripped = sample.strip()
    first_line_is_object = _first_line_object(sample)
    is_single_object = False
    if first_line_is_object and complete:
        try:
            json.loads(stripped)
            # One object on one line is a JSON Lines file of one record, unless it contains
            # the records as a list of objects.
            is_single_object = "\n" in stripped or _holds_list_of_objects(stripped)
        except json.JSONDecodeError:
            is_single_object = False

    json_format = "jsonl" if first_line_is_object and not is_single_object else "json"
    columns = _json_columns(path, FileInfo(json_format, encoding, None, [], display_name))
    if not columns:
        raise _empty_error(display_name, "contains no JSON objects")
    return FileInfo(json_format, encoding, None, columns, display_name)


def _holds_list_of_objects(text: str) -> bool:
    value = json.loads(text)
    return isinstance(value, dict) and any(
        isinstance(item, list) and item and isinstance(item[0], dict) for item in value.values()
    )


def _json_columns(path: Path, info: FileInfo) -> list[str]:
    """Return the keys of the first JSON_COLUMN_SAMPLE objects in order of first appearance."""
    columns: dict[str, None] = {}
    with RecordReader(path, info) as reader:
        for count, record in enumerate(reader, start=1):
            columns.update(dict.fromkeys(record.values))
            if count >= JSON_COLUMN_SAMPLE:
                break
    return list(columns)


def _sample_records(sample: str, complete: bool, delimiter: str) -> list[list[str]]:
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    records: list[list[str]] = []
    try:
        for fields in reader:
            if any(value.strip() for value in fields):
                records.append(fields)
            if len(records) > SAMPLE_RECORDS:
                break
    except csv.Error:
        return []
    if not complete and len(records) <= SAMPLE_RECORDS and len(records) > 1:
        # The last record of a cut sample may be cut as well.
        records.pop()
    return records[:SAMPLE_RECORDS]


def _delimiter_score(records: list[list[str]]) -> tuple[float, int]:
    """Score a delimiter by the share of rows whose field count matches the header's."""
    if not records or len(records[0]) < 2:
        return (0.0, 0)
    width = len(records[0])
    rows = records[1:] or records
    matching = sum(1 for fields in rows if len(fields) == width)
    return (matching / len(rows), width)


def _sniff_delimited(
    display_name: str, encoding: str, sample: str, complete: bool, claimed: str | None
) -> FileInfo:
    preferred = "\t" if claimed == "tsv" else ","
    candidates = (preferred, *[d for d in DELIMITERS if d != preferred])
    best_delimiter, best_score = preferred, (0.0, 0)
    for delimiter in candidates:
        score = _delimiter_score(_sample_records(sample, complete, delimiter))
        if score > best_score:
            best_delimiter, best_score = delimiter, score

    records = _sample_records(sample, complete, best_delimiter)
    if not records:
        raise _empty_error(display_name, "contains no readable rows")
    if complete and len(records) < 2:
        raise _empty_error(display_name, "contains only a header row")
    file_format = "tsv" if best_delimiter == "\t" else "csv"
    columns = unique_column_names(records[0])
    return FileInfo(file_format, encoding, best_delimiter, columns, display_name)
