"""Measure import throughput and peak memory on a 100,000-row CSV of Ethereum tweets.

The CSV repeats the texts of the shared ``ethereum-tweets/labelled.csv`` with a counter suffix,
so every row is a distinct text, and maps ``rating`` -1/0/1 to three labels. Usage:

    .venv/bin/python benchmarks/import_speed.py [--rows 100000] [--database-url URL]
        [--tracemalloc]

Prints rows per second, the process's peak resident memory (psutil) and, with
``--tracemalloc``, the peak of Python allocations during a second, traced run (tracing slows
the run down, so its time is not the throughput figure).
"""

from __future__ import annotations

import argparse
import csv
import logging
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import psutil

from labelandlearn.ingest.importer import import_file
from labelandlearn.ingest.mapping import ColumnMapping
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Label, Project

SOURCE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "datasets"
    / "ethereum-tweets"
    / ("labelled.csv")
)
LABEL_MAP = {"-1": "negative", "0": "useless", "1": "positive"}


def write_benchmark_csv(source: Path, target: Path, rows: int) -> None:
    """Write ``rows`` rows cycling through the source rows, each text with a counter suffix."""
    with source.open(encoding="utf-8", newline="") as handle:
        originals = list(csv.DictReader(handle))
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(originals[0]))
        writer.writeheader()
        for index in range(rows):
            row = dict(originals[index % len(originals)])
            row["text"] = f"{row['text']} #{index}"
            writer.writerow(row)


def create_project(db: Database, name: str) -> int:
    with db.session() as session:
        project = Project(
            name=name,
            labels=[
                Label(name="negative", key="1", position=0),
                Label(name="useless", key="2", position=1),
                Label(name="positive", key="3", position=2),
            ],
        )
        session.add(project)
        session.flush()
        return project.id


def run_import(db: Database, path: Path, project_name: str) -> tuple[float, float, int]:
    """Import the file into a new project; return wall seconds, CPU seconds and rows."""
    project_id = create_project(db, project_name)
    mapping = ColumnMapping("text", label_column="rating", label_map=LABEL_MAP)
    started, cpu_started = time.perf_counter(), time.process_time()
    report = import_file(db, project_id, path, path.name, mapping)
    return time.perf_counter() - started, time.process_time() - cpu_started, report.rows_imported


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the generated CSV")
    parser.add_argument("--database-url", help="database to import into (default: new SQLite)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also measure Python allocations (slow run)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not SOURCE.exists():
        print(f"source data {SOURCE} is missing", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as folder:
        csv_path = Path(folder) / "tweets.csv"
        write_benchmark_csv(SOURCE, csv_path, args.rows)
        db = Database(args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}")
        db.upgrade()
        rss_before = psutil.Process().memory_info().rss
        seconds, cpu_seconds, imported = run_import(
            db, csv_path, f"import benchmark {time.time_ns()}"
        )
        # ru_maxrss is in KiB on Linux.
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"file: {csv_path.stat().st_size / 1e6:.1f} MB, {args.rows} rows")
        print(f"imported {imported} rows in {seconds:.2f} s: {imported / seconds:,.0f} rows/s")
        # CPU time of this process (the SQLite engine runs in it too): the figure to read
        # when other programs share the cores.
        print(f"CPU time {cpu_seconds:.2f} s: {imported / cpu_seconds:,.0f} rows per CPU second")
        print(
            f"resident memory before import {rss_before / 2**20:.0f} MiB, "
            f"peak {peak_rss / 2**20:.0f} MiB"
        )

        if args.tracemalloc:
            tracemalloc.start()
            run_import(db, csv_path, f"import benchmark traced {time.time_ns()}")
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"tracemalloc peak of Python allocations during import: {peak / 2**20:.1f} MiB")
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
