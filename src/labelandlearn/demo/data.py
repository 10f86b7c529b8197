"""The demo project: Ethereum tweets, half labelled so that a model is useful from the start.

The data is the ``latest.csv`` of the public Label and Learn demo repository, downloaded once,
checked against its known size and SHA-256, and cached in the data folder. Without network
access the demo uses ``sample.csv``, about 150 short tweets written for this package with the
same columns.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import delete, select

from labelandlearn.errors import ImportFormatError, LabelAndLearnError
from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.ingest.readers import iter_records
from labelandlearn.ingest.sniff import sniff_file
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Label, Project

logger = logging.getLogger(__name__)

DEMO_URL = (
    "https://raw.githubusercontent.com/youngmil/labelandlearn/"
    "15b2a834a1aa006d2bc694e465eae9eaf380b71c/src/data_sets/latest.csv"
)
DEMO_SIZE = 1_630_532
DEMO_SHA256 = "d5c8c5b4cefe1214a583401db8f1dd0dd881bb7aee7455356696eb33889fc5de"
DEMO_CACHE_NAME = "ethereum-tweets-15b2a83.csv"
SAMPLE_PATH = Path(__file__).with_name("sample.csv")

DEMO_PROJECT_NAME = "Ethereum tweets (demo)"
DEMO_DESCRIPTION = (
    "Tweets about Ethereum from early 2018: is a tweet useless (spam, promotion, noise), "
    "positive or negative? Half of them arrive labelled, so the model has something to learn "
    "from on the first screen."
)
# rating -1/0/1 of the demo data, as label names
RATING_LABELS = {"-1": "negative", "0": "useless", "1": "positive"}
DEMO_LABELS = (
    ("negative", "1", "#d62728"),
    ("useless", "2", "#7f7f7f"),
    ("positive", "3", "#2ca02c"),
)
DOWNLOAD_CHUNK_BYTES = 64 * 1024

Origin = Literal["download", "cache", "sample", "file"]


@dataclass(frozen=True)
class DemoSource:
    """The demo data file and where it came from; usable wherever a path is expected."""

    path: Path
    origin: Origin

    def __fspath__(self) -> str:
        return str(self.path)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(DOWNLOAD_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_demo_data(
    data_dir: Path,
    *,
    url: str = DEMO_URL,
    timeout: float = 10,
    expected_size: int = DEMO_SIZE,
    expected_sha256: str = DEMO_SHA256,
) -> DemoSource:
    """Return the cached demo data, download it once, or fall back to the shipped sample.

    A download whose size or SHA-256 differs from the expected values raises
    LabelAndLearnError and is deleted. When the server cannot be reached, one warning line reports
    it and the sample shipped with the package is returned instead.
    """
    cache = Path(data_dir) / "demo" / DEMO_CACHE_NAME
    if cache.is_file():
        if cache.stat().st_size == expected_size and _sha256_of(cache) == expected_sha256:
            return DemoSource(cache, "cache")
        logger.warning(
            "cached demo data %s does not match its SHA-256; downloading it again", cache
        )
        cache.unlink()

    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download_verified(url, cache, timeout, expected_size, expected_sha256)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        logger.warning(
            "demo data download from %s failed (%s); using the small sample shipped with "
            "the package instead",
            url,
            reason,
        )
        return DemoSource(SAMPLE_PATH, "sample")
    logger.info("demo data downloaded from %s to %s", url, cache)
    return DemoSource(cache, "download")


def _download_verified(
    url: str, target: Path, timeout: float, expected_size: int, expected_sha256: str
) -> None:
    """Download ``url`` to ``target`` through a temporary file; keep it only if it verifies."""
    if not url.startswith(("https://", "http://")):
        raise LabelAndLearnError(f"demo data URL must be http or https, got {url!r}")
    digest = hashlib.sha256()
    size = 0
    handle, temporary_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as output:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                    size += len(chunk)
                    if size > expected_size:
                        break
                    digest.update(chunk)
                    output.write(chunk)
        if size != expected_size or digest.hexdigest() != expected_sha256:
            shown_size = f"more than {expected_size}" if size > expected_size else str(size)
            raise LabelAndLearnError(
                f"the demo data from {url} is not the expected file: {shown_size} bytes with "
                f"SHA-256 {digest.hexdigest()}, expected {expected_size} bytes with SHA-256 "
                f"{expected_sha256}. It was not kept; pass --data FILE to use a local copy."
            )
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def load_demo_project(db: Database, source: str | os.PathLike[str]) -> int:
    """Create the demo project from a CSV of tweets and return its id; idempotent.

    The file needs the columns ``text`` and ``rating`` (-1, 0 or 1) and may have ``date``;
    other columns are dropped. Within each rating, every other row is imported labelled and
    the rest unlabelled, in file order, so both halves keep the class balance. When the demo
    project exists already, its id is returned and nothing is imported.
    """
    with db.session() as session:
        existing = session.scalar(select(Project.id).where(Project.name == DEMO_PROJECT_NAME))
    if existing is not None:
        return existing

    path = Path(os.fspath(source))
    labelled_rows, unlabelled_rows = _split_demo_rows(path)
    project_id = _create_demo_project(db)
    try:
        with tempfile.TemporaryDirectory(prefix="labelandlearn-demo-") as folder:
            _import_half(db, project_id, Path(folder) / "labelled.csv", labelled_rows, True)
            _import_half(db, project_id, Path(folder) / "unlabelled.csv", unlabelled_rows, False)
    except BaseException:
        with db.session() as session:
            # Labels, items and answers go with the project (ON DELETE CASCADE).
            session.execute(delete(Project).where(Project.id == project_id))
        raise
    logger.info(
        "demo project %s loaded from %s: %d labelled and %d unlabelled rows",
        project_id,
        path,
        len(labelled_rows),
        len(unlabelled_rows),
    )
    return project_id


def _create_demo_project(db: Database) -> int:
    # The labels are fixed and valid, so the rows are written directly. This keeps the demo
    # independent of the model and strategy registries that project validation consults.
    labels = [
        Label(name=name, key=key, color=color, position=position)
        for position, (name, key, color) in enumerate(DEMO_LABELS)
    ]
    with db.session() as session:
        project = Project(
            name=DEMO_PROJECT_NAME, description=DEMO_DESCRIPTION, text_column="text", labels=labels
        )
        session.add(project)
        session.flush()
        return project.id


DemoRow = tuple[str, str, str]  # text, date, rating


def _split_demo_rows(path: Path) -> tuple[list[DemoRow], list[DemoRow]]:
    info = sniff_file(path)
    missing = [column for column in ("text", "rating") if column not in info.columns]
    if missing:
        raise ImportFormatError(
            f"demo data {path} lacks the column(s) {', '.join(missing)}; its columns are: "
            f"{', '.join(info.columns)}. The demo needs text and rating (-1, 0 or 1)."
        )
    seen_per_rating: dict[str, int] = defaultdict(int)
    labelled: list[DemoRow] = []
    unlabelled: list[DemoRow] = []
    for record in iter_records(path, info):
        if record.error is not None:
            continue
        values = record.values
        rating = (values.get("rating") or "").strip()
        row = (values.get("text") or "", values.get("date") or "", rating)
        if rating in RATING_LABELS and seen_per_rating[rating] % 2 == 0:
            labelled.append(row)
        else:
            unlabelled.append(row)
        seen_per_rating[rating] += 1
    return labelled, unlabelled


def _import_half(
    db: Database, project_id: int, path: Path, rows: list[DemoRow], with_labels: bool
) -> None:
    if not rows:
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        # The rating of an unlabelled row is left out: it would show the answer beside the text.
        writer.writerow(["text", "date", "rating"] if with_labels else ["text", "date"])
        for text, date, rating in rows:
            writer.writerow([text, date, rating] if with_labels else [text, date])
    mapping = ColumnMapping(
        text_column="text",
        label_column="rating" if with_labels else None,
        label_map=RATING_LABELS if with_labels else None,
    )
    import_file(db, project_id, path, f"demo {path.name}", mapping)
