"""Format, encoding and delimiter detection, and the records each reader yields."""

from __future__ import annotations

import codecs
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from labelandlearn.errors import ImportFormatError
from labelandlearn.ingest import json_stream
from labelandlearn.ingest.readers import Record, iter_records
from labelandlearn.ingest.sniff import sniff_file


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    if isinstance(content, str):
        content = content.encode(encoding)
    path.write_bytes(content)
    return path


def read_all(path: Path, filename: str | None = None) -> list[Record]:
    return list(iter_records(path, sniff_file(path, filename)))


def test_csv_columns_and_values(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "id,text,score\n00123,hello,\n7,world,3\n")
    info = sniff_file(path)
    assert info.format == "csv"
    assert info.delimiter == ","
    assert info.encoding == "utf-8"
    assert info.columns == ["id", "text", "score"]
    records = read_all(path)
    assert records[0] == Record(2, {"id": "00123", "text": "hello", "score": None})
    assert records[1] == Record(3, {"id": "7", "text": "world", "score": "3"})


@pytest.mark.parametrize(
    ("delimiter", "filename", "expected_format"),
    [(";", "a.csv", "csv"), ("\t", "a.tsv", "tsv"), ("\t", "a.csv", "tsv"), ("|", "a.txt", "csv")],
)
def test_delimiter_sniffed(
    tmp_path: Path, delimiter: str, filename: str, expected_format: str
) -> None:
    # Commas inside the texts must not win over the real delimiter.
    lines = [["id", "text", "price"], ["1", "a, b and c", "1,5"], ["2", "d, e", "2,25"]]
    content = "".join(delimiter.join(line) + "\n" for line in lines)
    path = write(tmp_path / filename, content)
    info = sniff_file(path)
    assert info.delimiter == delimiter
    assert info.format == expected_format
    assert read_all(path)[0].values == {"id": "1", "text": "a, b and c", "price": "1,5"}


def test_quoted_newlines_and_quotes_keep_line_numbers(tmp_path: Path) -> None:
    content = 'id,text\n1,"first line\nsecond line"\n2,"he said ""hi"", then left"\n\n3,plain\n'
    path = write(tmp_path / "q.csv", content)
    records = read_all(path)
    assert [record.line for record in records] == [2, 4, 6]
    assert records[0].values["text"] == "first line\nsecond line"
    assert records[1].values["text"] == 'he said "hi", then left'


def test_unclosed_quote_rejected(tmp_path: Path) -> None:
    content = 'text,label\nfirst,a\n"second starts a quote,b\nthird,a\nfourth,b\n'
    path = write(tmp_path / "a.csv", content)
    with pytest.raises(ImportFormatError, match=r"starts on line 3 is never closed.*lines 3 to 5"):
        read_all(path)


@pytest.mark.parametrize(
    "content",
    [
        'text,label\nfirst,a\n"two\nlines",b\n',
        'text,label\nfirst,a\n"two\nlines",b',
        'text,label\n"a ""quoted"" word\nacross lines",b\nlast,a\n',
        'text,label\nfirst,a\nlenient "quote" inside,b\n',
    ],
)
def test_closed_quotes_accepted(tmp_path: Path, content: str) -> None:
    records = read_all(write(tmp_path / "a.csv", content))
    assert all(record.error is None for record in records)
    assert records[-1].values["label"] in ("a", "b")


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path / "w.csv", 'text,n\r\n"a\r\nb",1\r\nc,2\r\n')
    records = read_all(path)
    assert [record.line for record in records] == [2, 4]
    assert records[0].values["text"] == "a\r\nb"


def test_utf8_bom_is_not_part_of_first_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.csv", codecs.BOM_UTF8 + "text,n\ncafé,1\n".encode())
    info = sniff_file(path)
    assert info.encoding == "utf-8-sig"
    assert info.columns == ["text", "n"]
    assert read_all(path)[0].values["text"] == "café"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom(tmp_path: Path, encoding: str) -> None:
    body = "text;n\nnaïve résumé;1\n"
    raw = (
        body.encode("utf-16")
        if encoding == "utf-16"
        else (
            (codecs.BOM_UTF16_LE if encoding.endswith("le") else codecs.BOM_UTF16_BE)
            + body.encode(encoding)
        )
    )
    path = write(tmp_path / "u16.csv", raw)
    info = sniff_file(path)
    assert info.encoding == "utf-16"
    assert info.delimiter == ";"
    assert read_all(path)[0].values == {"text": "naïve résumé", "n": "1"}


def test_cp1252_file(tmp_path: Path) -> None:
    content = "text;price\nnaïve café – très “bon”;5€\nGrüße aus Köln;3\n"
    path = write(tmp_path / "w.csv", content, encoding="cp1252")
    info = sniff_file(path)
    assert info.encoding == "cp1252"
    records = read_all(path)
    assert records[0].values == {"text": "naïve café – très “bon”", "price": "5€"}
    assert records[1].values["text"] == "Grüße aus Köln"


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "Café très bon, déjà vu"),
        ("cp1252", "Naïve façade, über cool"),
        ("cp1251", "Привет как дела отлично"),
    ],
)
def test_short_single_byte_file_decoded(tmp_path: Path, encoding: str, text: str) -> None:
    # charset-normalizer ranked cp1257 first for the French rows; the accents must survive.
    content = f"text;rating\n{text};1\nLe prix a baissé à 5€ — hélas;-1\n"
    if encoding == "cp1251":
        content = f"text;rating\n{text};1\nЭто тест кодировки файла;0\n"
    path = write(tmp_path / "short.csv", content, encoding=encoding)
    assert sniff_file(path).encoding == encoding
    assert read_all(path)[0].values["text"] == text


def test_cp1252_after_long_ascii_start(tmp_path: Path) -> None:
    # The only non-ASCII byte is far beyond any sample taken from the start of the file.
    ascii_rows = "".join(f"{index},plain ascii text\n" for index in range(30_000))
    path = write(tmp_path / "late.csv", "id,text\n" + ascii_rows + "30000,déjà vu\n", "cp1252")
    info = sniff_file(path)
    assert info.encoding == "cp1252"
    assert read_all(path)[-1].values["text"] == "déjà vu"


def test_empty_file_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.csv", b"")
    with pytest.raises(ImportFormatError, match=r"empty\.csv is empty \(0 bytes\)"):
        sniff_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,label\n", "only a header row"),
        ("text,label\n\n\n", "only a header row"),
        ("\n \n\t\n", "only blank lines"),
        ("[]", "no JSON objects"),
        ('{\n  "items": []\n}', "without a list of objects"),
    ],
)
def test_file_without_rows_rejected(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path / "data.txt", content)
    with pytest.raises(ImportFormatError, match=message):
        sniff_file(path)


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10",
        b"text,label\nhello\x00world,1\n",
        bytes(range(1, 32)) * 50,
    ],
)
def test_binary_file_rejected(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path / "data.csv", content)
    with pytest.raises(ImportFormatError, match="binary file"):
        sniff_file(path)


def test_json_lines_in_json_file(tmp_path: Path) -> None:
    lines = [{"text": "a", "n": 1}, {"text": "b", "extra": True}, {"text": "c", "n": None}]
    content = "\n".join(json.dumps(line) for line in lines) + "\n"
    path = write(tmp_path / "data.json", content)
    info = sniff_file(path)
    assert info.format == "jsonl"
    assert info.columns == ["text", "n", "extra"]
    records = read_all(path)
    assert [record.line for record in records] == [1, 2, 3]
    assert records[0].values == {"text": "a", "n": "1"}
    assert records[1].values == {"text": "b", "extra": "true"}
    assert records[2].values == {"text": "c", "n": None}


def test_json_array_pretty_printed(tmp_path: Path) -> None:
    rows = [{"id": "00123", "text": "first", "tags": ["x", "y"]}, {"id": 5, "text": "second"}]
    path = write(tmp_path / "data.jsonl", json.dumps(rows, indent=2))
    info = sniff_file(path)
    assert info.format == "json"
    records = read_all(path)
    assert [record.line for record in records] == [2, 10]
    assert records[0].values == {"id": "00123", "text": "first", "tags": '["x", "y"]'}
    assert records[1].values == {"id": "5", "text": "second"}


def test_json_object_holding_a_list(tmp_path: Path) -> None:
    document = {
        "count": 2,
        "meta": {"source": "x"},
        "empty": [],
        "data": [{"text": "a"}, {"text": "b"}],
    }
    path = write(tmp_path / "wrapped.json", json.dumps(document, indent=1))
    assert sniff_file(path).format == "json"
    assert [record.values["text"] for record in read_all(path)] == ["a", "b"]

    one_line = write(tmp_path / "one_line.json", json.dumps(document))
    assert [record.values["text"] for record in read_all(one_line)] == ["a", "b"]


def test_json_array_streamed_across_small_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(json_stream, "READ_CHARS", 7)
    rows = [{"text": f"row {index} " + "é" * index, "n": index * 1.5} for index in range(200)]
    path = write(tmp_path / "big.json", json.dumps(rows))
    records = read_all(path)
    assert len(records) == 200
    assert records[199].values == {"text": "row 199 " + "é" * 199, "n": "298.5"}
    assert records[3].values["n"] == "4.5"


def test_json_array_element_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.json", '[{"text": "a"},\n 42,\n {"text": "b"}]')
    records = read_all(path)
    assert records[1] == Record(2, {}, "expected a JSON object but found a number")
    assert records[2].values == {"text": "b"}


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ('[{"text": "a"},\n{"text": "b",,}\n]', 2),
        ('[\n{"text": "a"}\n{"text": "b"}\n]', 3),
        ('[{"text": "a"},\n\n{"text": "unterminated\n', 3),
    ],
)
def test_malformed_json_reports_line(tmp_path: Path, content: str, line: int) -> None:
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(ImportFormatError, match=rf"not valid JSON: .* at line {line}\b"):
        read_all(path)


def test_malformed_json_lines_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    with pytest.raises(ImportFormatError, match="not valid JSON Lines: .* at line 3"):
        read_all(path)


@pytest.mark.parametrize("filename", ["notes.json", "table.parquet", "sheet.xlsx"])
def test_plain_text_named_like_another_format(tmp_path: Path, filename: str) -> None:
    path = write(tmp_path / filename, "just some words\nand more words\n")
    with pytest.raises(ImportFormatError, match="is named like a .* file but is not one"):
        sniff_file(path)


def test_csv_named_json_is_read_as_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "really_csv.json", "text,label\nhello,a\n")
    info = sniff_file(path)
    assert info.format == "csv"
    assert read_all(path)[0].values == {"text": "hello", "label": "a"}


def test_row_with_extra_fields_is_a_row_error(tmp_path: Path) -> None:
    path = write(tmp_path / "extra.csv", "text,label\na,b\nc,d,e\nf\ng,h,,\n")
    records = read_all(path)
    assert records[0].values == {"text": "a", "label": "b"}
    assert records[1].line == 3
    assert records[1].error is not None
    assert "3 columns but the header has 2" in records[1].error
    assert records[2].values == {"text": "f", "label": None}
    # Empty trailing fields (a trailing delimiter) are not an error.
    assert records[3].values == {"text": "g", "label": "h"}


def test_blank_and_repeated_header_names(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "text, ,text,\na,b,c,d\n")
    assert sniff_file(path).columns == ["text", "column_2", "text_2", "column_4"]


def test_parquet_file(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": ["00123", "00124", None],
            "text": ["first", "second", "third"],
            "rating": [-1, 0, 1],
            "score": [0.25, None, 2.0],
        }
    )
    path = tmp_path / "data.parquet"
    pq.write_table(table, path, row_group_size=2)
    info = sniff_file(path, "upload.bin")
    assert info.format == "parquet"
    assert info.columns == ["id", "text", "rating", "score"]
    records = read_all(path)
    assert [record.line for record in records] == [1, 2, 3]
    assert records[0].values == {"id": "00123", "text": "first", "rating": "-1", "score": "0.25"}
    assert records[2].values == {"id": None, "text": "third", "rating": "1", "score": "2"}


def test_empty_parquet_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(ImportFormatError, match="Parquet file with no rows"):
        sniff_file(path)


def test_excel_file(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append([None, None, None])
    sheet.append(["id", "text", "rating"])
    sheet.append(["00123", "first tweet", -1])
    sheet.append([None, None, None])
    sheet.append([7, "second tweet", 1.5])
    path = tmp_path / "sheet.xlsx"
    workbook.save(path)
    info = sniff_file(path, "data.csv")
    assert info.format == "xlsx"
    assert info.columns == ["id", "text", "rating"]
    records = read_all(path)
    assert [record.line for record in records] == [3, 5]
    assert records[0].values == {"id": "00123", "text": "first tweet", "rating": "-1"}
    assert records[1].values == {"id": "7", "text": "second tweet", "rating": "1.5"}


def test_excel_stored_without_suffix(tmp_path: Path) -> None:
    # Uploads are stored under a fixed name; openpyxl rejects such a path by its suffix.
    workbook = Workbook()
    workbook.active.append(["text", "rating"])
    workbook.active.append(["a tweet", 1])
    path = tmp_path / "upload.bin"
    workbook.save(path)
    info = sniff_file(path, "tweets.xlsx")
    assert info.format == "xlsx"
    assert [record.values for record in read_all(path, "tweets.xlsx")] == [
        {"text": "a tweet", "rating": "1"}
    ]


def test_excel_with_only_a_header_rejected(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.append(["text", "label"])
    path = tmp_path / "header.xlsx"
    workbook.save(path)
    with pytest.raises(ImportFormatError, match="only a header row"):
        sniff_file(path)


def test_zip_that_is_not_a_workbook_rejected(tmp_path: Path) -> None:
    path = tmp_path / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ImportFormatError, match="not an Excel .xlsx workbook"):
        sniff_file(path)


def test_old_xls_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    with pytest.raises(ImportFormatError, match="old Excel .xls"):
        sniff_file(path)
