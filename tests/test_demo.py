"""Demo data: verified download and cache, fallback to the shipped sample, demo project."""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import socket
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from labelandlearn.demo import (
    DEMO_PROJECT_NAME,
    SAMPLE_PATH,
    fetch_demo_data,
    load_demo_project,
)
from labelandlearn.demo import data as demo_data
from labelandlearn.errors import ImportFormatError, LabelAndLearnError
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Answer, Item, Label, Project
from shared_data import dataset_path

REPO_ROOT = Path(__file__).resolve().parent.parent


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None


@pytest.fixture
def served_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Serve a folder over HTTP on 127.0.0.1; yield the folder and its base URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_download_verified_then_cached(served_folder: tuple[Path, str], tmp_path: Path) -> None:
    folder, base_url = served_folder
    content = SAMPLE_PATH.read_bytes()
    (folder / "latest.csv").write_bytes(content)
    size, sha256 = len(content), hashlib.sha256(content).hexdigest()
    data_dir = tmp_path / "data"

    first = fetch_demo_data(
        data_dir, url=f"{base_url}/latest.csv", expected_size=size, expected_sha256=sha256
    )
    assert first.origin == "download"
    assert first.path.parent == data_dir / "demo"
    assert first.path.read_bytes() == content

    (folder / "latest.csv").unlink()
    second = fetch_demo_data(
        data_dir, url=f"{base_url}/latest.csv", expected_size=size, expected_sha256=sha256
    )
    assert second.origin == "cache"
    assert second.path == first.path


def test_download_with_wrong_hash_not_kept(served_folder: tuple[Path, str], tmp_path: Path) -> None:
    folder, base_url = served_folder
    content = b"text,rating\ntampered,1\n"
    (folder / "latest.csv").write_bytes(content)
    data_dir = tmp_path / "data"

    with pytest.raises(LabelAndLearnError, match="is not the expected file") as raised:
        fetch_demo_data(
            data_dir,
            url=f"{base_url}/latest.csv",
            expected_size=len(content),
            expected_sha256="0" * 64,
        )
    assert hashlib.sha256(content).hexdigest() in str(raised.value)
    assert list((data_dir / "demo").iterdir()) == []


def test_download_larger_than_expected_not_kept(
    served_folder: tuple[Path, str], tmp_path: Path
) -> None:
    folder, base_url = served_folder
    (folder / "latest.csv").write_bytes(b"x" * 5000)
    data_dir = tmp_path / "data"
    with pytest.raises(LabelAndLearnError, match="more than 100 bytes"):
        fetch_demo_data(
            data_dir, url=f"{base_url}/latest.csv", expected_size=100, expected_sha256="0" * 64
        )
    assert list((data_dir / "demo").iterdir()) == []


def test_unreachable_server_falls_back_to_sample(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{unused_port()}/latest.csv"
    with caplog.at_level(logging.WARNING, logger="labelandlearn.demo"):
        source = fetch_demo_data(tmp_path / "data", url=url, timeout=2)
    assert source.origin == "sample"
    assert source.path == SAMPLE_PATH
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "download" in message
    assert "failed" in message
    assert "sample" in message
    assert "\n" not in message


def test_missing_file_on_server_falls_back_to_sample(
    served_folder: tuple[Path, str], tmp_path: Path
) -> None:
    _folder, base_url = served_folder
    source = fetch_demo_data(tmp_path / "data", url=f"{base_url}/missing.csv")
    assert source.origin == "sample"


def test_shipped_sample_shape() -> None:
    with SAMPLE_PATH.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "username", "rating", "useful", "text", "hashtags", "retweets", "date", "mentions"
    ]  # fmt: skip
    assert 140 <= len(rows) <= 160
    shares = Counter(row["rating"] for row in rows)
    assert set(shares) == {"-1", "0", "1"}
    assert 0.6 <= shares["0"] / len(rows) <= 0.8
    assert 0.15 <= shares["1"] / len(rows) <= 0.25
    assert 0.05 <= shares["-1"] / len(rows) <= 0.15
    assert all(row["useful"] == str(int(row["rating"] != "0")) for row in rows)
    assert len({row["text"] for row in rows}) == len(rows)


def test_load_demo_project_is_idempotent(db: Database) -> None:
    project_id = load_demo_project(db, SAMPLE_PATH)

    with db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        assert project.name == DEMO_PROJECT_NAME
        labels = session.execute(
            select(Label.name, Label.key)
            .where(Label.project_id == project_id)
            .order_by(Label.position)
        ).all()
        items = session.execute(
            select(Item.meta, Label.name).outerjoin(Label, Label.id == Item.label_id)
        ).all()
        imported_answers = session.scalar(
            select(func.count()).select_from(Answer).where(Answer.source == "import")
        )
    assert [tuple(label) for label in labels] == [
        ("negative", "1"), ("useless", "2"), ("positive", "3")
    ]  # fmt: skip
    assert len(items) == 149
    labelled = Counter(name for _meta, name in items if name is not None)
    # Every other row of each rating: 52 of 104 useless, 15 of 30 positive, 8 of 15 negative.
    assert labelled == Counter({"useless": 52, "positive": 15, "negative": 8})
    assert imported_answers == sum(labelled.values())
    assert all(set(meta) == {"date"} for meta, _name in items)

    assert load_demo_project(db, SAMPLE_PATH) == project_id
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 149


def test_wheel_ships_the_sample(tmp_path: Path) -> None:
    builder_module = pytest.importorskip("hatchling.builders.wheel")
    builder = builder_module.WheelBuilder(str(REPO_ROOT))
    wheels = list(builder.build(directory=str(tmp_path), versions=["standard"]))
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    assert "labelandlearn/demo/sample.csv" in names


def test_demo_project_from_real_tweets(db: Database) -> None:
    path = dataset_path("ethereum-tweets", "labelled.csv")
    project_id = load_demo_project(db, path)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(Item))
        labelled = session.scalar(
            select(func.count()).select_from(Item).where(Item.label_id.is_not(None))
        )
    assert total is not None and labelled is not None
    # 5,590 rows minus exact duplicate texts; half of each rating arrives labelled.
    assert 5400 <= total <= 5590
    assert abs(labelled - total / 2) <= 0.02 * total
    assert project_id == load_demo_project(db, path)


def test_demo_data_without_rating_rejected(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "tweets.csv"
    path.write_text("text,date\nhello,01/01/2018\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match="lacks the column"):
        load_demo_project(db, path)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0


def test_failed_demo_load_removes_project(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_import = demo_data.import_file

    def fail_second_import(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real_import(*args, **kwargs)

    monkeypatch.setattr(demo_data, "import_file", fail_second_import)
    with pytest.raises(RuntimeError, match="interrupted"):
        load_demo_project(db, SAMPLE_PATH)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0
        assert session.scalar(select(func.count()).select_from(Item)) == 0
