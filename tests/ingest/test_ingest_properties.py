"""Property tests: whatever csv.writer or json.dumps writes, the readers give back unchanged."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelandlearn.ingest import json_stream
from labelandlearn.ingest.readers import iter_records
from labelandlearn.ingest.sniff import sniff_file

# Any text but surrogates and control characters (a file full of those is rejected as binary),
# plus the characters that CSV quoting has to handle.
FIELD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters=",;|\t\"'\n\r "),
    max_size=40,
)
COLUMNS = ["id", "text", "note"]
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@contextmanager
def file_with(content: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        yield path


def physical_lines(text: str) -> int:
    # The CSV reader counts lines split at \n, \r and \r\n, as universal newlines do.
    return len(io.StringIO(text, newline="").readlines())


@PROPERTY_SETTINGS
@given(
    rows=st.lists(st.tuples(FIELD_TEXT, FIELD_TEXT), min_size=1, max_size=15),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
)
def test_delimited_round_trip(rows: list[tuple[str, str]], delimiter: str) -> None:
    # The id column is never empty, so no generated row is a blank line that readers skip.
    full_rows = [(f"{index:05d}", text, note) for index, (text, note) in enumerate(rows)]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(COLUMNS)
    expected_lines = []
    line = 2
    for row in full_rows:
        expected_lines.append(line)
        row_buffer = io.StringIO(newline="")
        csv.writer(row_buffer, delimiter=delimiter).writerow(row)
        line += physical_lines(row_buffer.getvalue())
        writer.writerow(row)

    with file_with(buffer.getvalue().encode("utf-8"), ".csv") as path:
        info = sniff_file(path)
        assert info.delimiter == delimiter
        assert info.columns == COLUMNS
        records = list(iter_records(path, info))

    assert [record.error for record in records] == [None] * len(full_rows)
    assert [record.line for record in records] == expected_lines
    expected = [{c: v or None for c, v in zip(COLUMNS, row, strict=True)} for row in full_rows]
    assert [record.values for record in records] == expected


@PROPERTY_SETTINGS
@given(
    rows=st.lists(st.tuples(st.text(max_size=40), st.text(max_size=40)), min_size=1, max_size=15)
)
def test_json_lines_round_trip(rows: list[tuple[str, str]]) -> None:
    objects = [{"id": f"{index:05d}", "text": a, "note": b} for index, (a, b) in enumerate(rows)]
    content = "".join(json.dumps(obj) + "\n" for obj in objects)
    with file_with(content.encode("utf-8"), ".jsonl") as path:
        info = sniff_file(path)
        assert info.format == "jsonl"
        records = list(iter_records(path, info))
    assert [record.line for record in records] == list(range(1, len(objects) + 1))
    expected = [{key: value or None for key, value in obj.items()} for obj in objects]
    assert [record.values for record in records] == expected


@pytest.fixture
def tiny_json_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of a few characters make every value straddle chunk boundaries.
    monkeypatch.setattr(json_stream, "READ_CHARS", 5)


@settings(
    max_examples=60,
    deadline=None,
    # The fixture only patches a constant, which every generated input may share.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(st.tuples(st.text(max_size=30), st.integers()), min_size=1, max_size=12),
    indent=st.sampled_from([None, 0, 2]),
    wrapped=st.booleans(),
)
def test_json_array_round_trip(
    tiny_json_chunks: None, rows: list[tuple[str, int]], indent: int | None, wrapped: bool
) -> None:
    objects = [{"id": f"{index:05d}", "text": t, "n": n} for index, (t, n) in enumerate(rows)]
    document: object = {"total": len(objects), "rows": objects} if wrapped else objects
    content = json.dumps(document, indent=indent, ensure_ascii=bool(indent))
    with file_with(content.encode("utf-8"), ".json") as path:
        info = sniff_file(path)
        records = list(iter_records(path, info))
    expected = [
        {"id": obj["id"], "text": obj["text"] or None, "n": str(obj["n"])} for obj in objects
    ]
    assert [record.values for record in records] == expected
