"""Uploaded import files: stored under ``<data_dir>/uploads/<project>/<upload id>/``, described.

An upload is kept until its import finishes or fails, so the user can map columns between
uploading and importing. The original file name is kept in ``upload.json`` beside the file and
never used as a path, so a name like ``../../x`` cannot write outside the upload folder.

NOTE: the import job deletes the uploaded file but leaves its folder with ``upload.json``, and
an upload that is never imported stays until someone deletes it; nothing cleans these up yet.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from labelandlearn.errors import (
    ImportFormatError,
    NotFoundError,
    UploadTooLargeError,
)
from labelandlearn.ingest.readers import RecordReader
from labelandlearn.ingest.sniff import sniff_file

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
PREVIEW_ROWS = 10
# Rows read to list each column's distinct values for the label value map.
VALUE_SAMPLE_ROWS = 5000
MAX_DISTINCT_VALUES = 50
MAX_PREVIEW_CHARS = 500
STORED_NAME = "upload.bin"
META_NAME = "upload.json"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class StoredUpload:
    upload_id: str
    path: Path
    filename: str
    size: int


def upload_root(data_dir: Path, project_id: int) -> Path:
    return Path(data_dir) / "uploads" / str(project_id)


def save_upload(
    data_dir: Path,
    project_id: int,
    filename: str,
    chunks: Iterable[bytes],
    max_bytes: int,
) -> StoredUpload:
    """Write ``chunks`` to a new upload folder and return it; stops past ``max_bytes``.

    Raises UploadTooLargeError (and removes the partial file) when the data exceeds the limit.
    """
    upload_id = uuid.uuid4().hex
    folder = upload_root(data_dir, project_id) / upload_id
    folder.mkdir(parents=True)
    target = folder / STORED_NAME
    size = 0
    try:
        with target.open("wb") as handle:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLargeError(
                        f"the upload is larger than the limit of {max_bytes // (1024 * 1024)} "
                        "MB; split the file or raise LABELANDLEARN_MAX_UPLOAD_MB"
                    )
                handle.write(chunk)
        (folder / META_NAME).write_text(json.dumps({"filename": filename, "size": size}))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    logger.info("upload %s stored for project %s: %d bytes", upload_id, project_id, size)
    return StoredUpload(upload_id, target, filename, size)


def read_chunks(stream: IO[bytes], chunk_bytes: int = CHUNK_BYTES) -> Iterable[bytes]:
    """Yield a binary stream's content in chunks of at most ``chunk_bytes``."""
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            return
        yield chunk


def get_upload(data_dir: Path, project_id: int, upload_id: str) -> StoredUpload:
    """Return a stored upload of the project; NotFoundError for an unknown or malformed id."""
    folder = upload_root(data_dir, project_id) / upload_id
    if not _UPLOAD_ID.match(upload_id) or not (folder / STORED_NAME).is_file():
        raise NotFoundError(
            f"upload {upload_id!r} not found in project {project_id}; upload the file again"
        )
    meta = json.loads((folder / META_NAME).read_text())
    return StoredUpload(upload_id, folder / STORED_NAME, str(meta["filename"]), int(meta["size"]))


def delete_upload(data_dir: Path, project_id: int, upload_id: str) -> None:
    if _UPLOAD_ID.match(upload_id):
        shutil.rmtree(upload_root(data_dir, project_id) / upload_id, ignore_errors=True)


def _shorten(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_PREVIEW_CHARS:
        return value[:MAX_PREVIEW_CHARS] + "…"
    return value


def describe_upload(upload: StoredUpload) -> dict[str, Any]:
    """Return the detected format, encoding, columns, preview rows and each column's values.

    ``values`` lists, per column, the distinct values of the first VALUE_SAMPLE_ROWS rows, or
    None for a column with more than MAX_DISTINCT_VALUES of them (not a label column).
    Raises ImportFormatError for a file that cannot be imported.
    """
    info = sniff_file(upload.path, upload.filename)
    preview: list[dict[str, str | None]] = []
    distinct: dict[str, dict[str, None] | None] = {column: {} for column in info.columns}
    rows_sampled = 0
    with RecordReader(upload.path, info) as reader:
        for record in reader:
            if record.error is not None:
                continue
            rows_sampled += 1
            if len(preview) < PREVIEW_ROWS:
                preview.append({c: _shorten(record.values.get(c)) for c in info.columns})
            _add_distinct(distinct, record.values)
            if rows_sampled >= VALUE_SAMPLE_ROWS:
                break
    return {
        "upload_id": upload.upload_id,
        "filename": upload.filename,
        "size": upload.size,
        "format": info.format,
        "encoding": info.encoding,
        "delimiter": info.delimiter,
        "columns": info.columns,
        "preview": preview,
        "rows_sampled": rows_sampled,
        "values": {
            column: sorted(values) if values is not None else None
            for column, values in distinct.items()
        },
    }


def _add_distinct(
    distinct: dict[str, dict[str, None] | None], values: dict[str, str | None]
) -> None:
    for column, seen in distinct.items():
        if seen is None:
            continue
        value = values.get(column)
        if value is None or not value.strip():
            continue
        seen[value.strip()] = None
        if len(seen) > MAX_DISTINCT_VALUES:
            distinct[column] = None


def describe_or_delete(upload: StoredUpload, data_dir: Path, project_id: int) -> dict[str, Any]:
    """Describe an upload; a file that cannot be imported is deleted before the error rises.

    Any error deletes it, not only the expected ones: a file that breaks the reader (JSON
    nested deeper than Python's recursion limit, say) would otherwise stay on disk.
    """
    try:
        return describe_upload(upload)
    except RecursionError:
        delete_upload(data_dir, project_id, upload.upload_id)
        raise ImportFormatError(
            f"{upload.filename} nests its JSON too deeply to read; flatten the records"
        ) from None
    except Exception:
        delete_upload(data_dir, project_id, upload.upload_id)
        raise
