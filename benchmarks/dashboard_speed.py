"""Time the dashboard and the project list of a large project, one request at a time.

Creates a SQLite project of ``--items`` distinct texts (the labelled Ethereum tweets, then the
tweets again with a tag of their own per item), with the default model, whose embeddings make
the dashboard count the texts without a cached vector. Then times GET /projects/<id> and GET /
through Flask's test client: the first view after start, which counts again, and the views
after it.

Run: .venv/bin/python benchmarks/dashboard_speed.py [--items 500000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from flask.testing import FlaskClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_speed import DATASET, create_project, load_tweets  # noqa: E402

from labelandlearn.settings import Settings  # noqa: E402
from labelandlearn.storage.db import Database  # noqa: E402
from labelandlearn.web.app import create_app  # noqa: E402


def timed_get(client: FlaskClient, path: str) -> float:
    """Return the seconds one GET of ``path`` took; exit when it does not return 200."""
    started = time.perf_counter()
    response = client.get(path)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"GET {path} returned status {response.status_code}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500_000, help="unlabelled items to add")
    parser.add_argument("--repeat", type=int, default=5, help="timed views after the first")
    args = parser.parse_args()
    if not DATASET.is_dir():
        raise SystemExit(f"dataset folder {DATASET} not found; this benchmark needs it")
    logging.basicConfig(level=logging.WARNING)
    texts, labels, _ = load_tweets()
    with tempfile.TemporaryDirectory() as folder:
        # No embed job at start: it would compete with the timed requests for the CPU.
        settings = Settings(data_dir=Path(folder), accounts=False, embeddings="off")
        db = Database(settings.resolved_database_url)
        db.upgrade()
        pool = [f"{texts[i % len(texts)]} #t{i}" for i in range(args.items)]
        started = time.perf_counter()
        project_id = create_project(db, "large", texts + pool, labels + [None] * len(pool))
        print(f"created {len(texts) + len(pool)} items in {time.perf_counter() - started:.1f} s")
        client = create_app(settings, db=db).test_client()
        for name, path in (("dashboard", f"/projects/{project_id}"), ("project list", "/")):
            first = timed_get(client, path)
            rest = [timed_get(client, path) for _ in range(args.repeat)]
            print(
                f"{name}: first view {first:.3f} s, then median {statistics.median(rest):.3f} s "
                f"(min {min(rest):.3f}, max {max(rest):.3f})"
            )
        db.dispose()
    print(f"load average, 1 min, at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
