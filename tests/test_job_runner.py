"""The in-process job runner's child processes."""

from __future__ import annotations

import time
from pathlib import Path

from labelandlearn.jobs.inprocess import InProcessRunner
from labelandlearn.storage.db import Database


def test_shutdown_ends_busy_child_processes(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    db.upgrade()
    runner = InProcessRunner(db, threads=1, isolation="process")
    assert runner._processes is not None
    busy = runner._processes.submit(time.sleep, 60)
    deadline = time.monotonic() + 30
    while not busy.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert busy.running()
    workers = list(runner._processes._processes.values())  # type: ignore[attr-defined]
    assert workers

    started = time.monotonic()
    runner.shutdown(wait=False)

    for process in workers:
        process.join(timeout=10)
        assert not process.is_alive()
    assert time.monotonic() - started < 15
    db.dispose()
