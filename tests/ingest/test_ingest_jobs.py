"""The import job handler: parameters, report, progress and removal of the uploaded file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from ingest_helpers import create_project

from labelandlearn.errors import ImportFormatError, ValidationError
from labelandlearn.ingest.jobs import run_import_job
from labelandlearn.jobs import base as jobs_base
from labelandlearn.jobs.base import JobContext
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Job


def start_job(db: Database, project_id: int) -> JobContext:
    with db.session() as session:
        job = Job(kind="import", project_id=project_id, status="running")
        session.add(job)
        session.flush()
        job_id = job.id
    return JobContext(db, job_id, project_id)


def write_tweets(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["tweet", "rating"], ["good", "1"], ["spam", "0"], ["later", ""]])
    return path


def test_import_handler_registered() -> None:
    assert jobs_base._HANDLERS["import"] is run_import_job


def test_import_job_with_flat_params(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_tweets(tmp_path / "upload-1234.csv")
    context = start_job(db, project_id)
    params = {
        "path": str(path),
        "filename": "tweets.csv",
        "text_column": "tweet",
        "label_column": "rating",
        "label_map": {"1": "positive", "0": "useless"},
        "duplicates": "skip",
        "delete_after": True,
    }

    result = run_import_job(context, params)
    assert result is not None

    assert result["filename"] == "tweets.csv"
    assert (result["rows_imported"], result["rows_labelled"]) == (3, 2)
    assert not path.exists()
    with db.session() as session:
        job = session.get(Job, context.job_id)
        assert job is not None
        assert job.progress == 1.0
        assert job.message == "imported 3 rows"


def test_import_job_with_mapping_param(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_tweets(tmp_path / "t.csv")
    params = {"path": str(path), "mapping": {"text_column": "tweet"}, "delete_after": False}

    result = run_import_job(start_job(db, project_id), params)
    assert result is not None

    assert result["rows_imported"] == 3
    assert result["rows_labelled"] == 0
    assert path.exists()


def test_failed_import_job_still_deletes_file(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_tweets(tmp_path / "t.csv")
    params = {"path": str(path), "text_column": "body", "delete_after": True}
    with pytest.raises(ImportFormatError, match="columns are: tweet, rating"):
        run_import_job(start_job(db, project_id), params)
    assert not path.exists()


def test_import_job_needs_text_column(db: Database, tmp_path: Path) -> None:
    project_id = create_project(db)
    path = write_tweets(tmp_path / "t.csv")
    with pytest.raises(ValidationError, match="needs text_column"):
        run_import_job(start_job(db, project_id), {"path": str(path)})
