"""The in-process job runner's child processes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from labelandlearn.jobs import base
from labelandlearn.jobs.inprocess import InProcessRunner
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Job


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


def job_status(db: Database, job_id: str) -> str:
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status


def test_embed_job_leaves_threads_to_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    db.upgrade()
    release = threading.Event()

    def long_embed(context: Any, params: dict[str, Any]) -> dict[str, Any]:
        release.wait(timeout=30)
        return {}

    base._load_builtin_handlers()
    monkeypatch.setitem(base._HANDLERS, "embed", long_embed)
    monkeypatch.setitem(base._HANDLERS, "quick", lambda context, params: {"done": True})
    runner = InProcessRunner(db, threads=1)
    try:
        embed_ids = [runner.submit("embed", None) for _ in range(2)]
        quick_id = runner.submit("quick", None)
        # The one ordinary thread is free although two embed jobs wait.
        runner.wait(quick_id, timeout=10)
        assert job_status(db, quick_id) == "done"
        assert job_status(db, embed_ids[1]) == "queued"
    finally:
        release.set()
        runner.shutdown(wait=True)
        db.dispose()
