"""Simulated annotators: each logs in and submits answers over HTTP with retries and doubles.

Used by ``benchmarks/load_test.py`` (the full measurement) and by the shorter test in
``tests/test_load.py``. Requests go only to the server URL given, on this machine.

Two load models: closed loop (each annotator sends its next answer as soon as the last one
returned, so a slower server gets fewer requests) and paced (``rate``: answers per second
offered on a fixed schedule, whatever the server does). Paced latencies count from the
scheduled start, so time that an answer spent waiting behind a slow one is included.
"""

from __future__ import annotations

import gc
import hashlib
import http.client
import json
import multiprocessing
import multiprocessing.queues
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psutil
import sqlalchemy as sa

from labelandlearn.auth import users
from labelandlearn.auth.permissions import set_membership
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Item, Label, Project

# Annotators per client process: few enough that their threads rarely wait on one GIL.
ANNOTATORS_PER_PROCESS = 5
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@dataclass
class AnnotatorResult:
    username: str
    stored_answer_ids: set[str] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)
    doubled: int = 0
    retried: int = 0
    conflicts: int = 0
    # Paced runs: answers sent after their scheduled start because the previous one was late.
    behind_schedule: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pacing:
    """The schedule of one annotator in a paced run: answer k starts at first + k * interval.

    Times are ``time.monotonic()`` seconds (CLOCK_MONOTONIC on Linux, one clock for all
    processes).
    """

    first: float
    interval: float

    def start_of(self, k: int) -> float:
        return self.first + k * self.interval


def pacing_for(index: int, annotators: int, rate: float, start: float) -> Pacing:
    """Return the schedule of annotator ``index`` when ``annotators`` share ``rate`` answers/s.

    Each annotator sends one answer every ``annotators / rate`` seconds, and annotator i is
    offset by ``i / rate``, so the answers of all annotators together arrive evenly spaced.
    """
    if rate <= 0:
        raise ValueError(f"rate must be above 0 answers per second, got {rate}")
    return Pacing(first=start + index / rate, interval=annotators / rate)


class Annotator:
    """One browser-like client: cookie session, CSRF token, keep-alive connection."""

    def __init__(self, base_url: str, username: str, password: str, seed: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.username, self.password = username, password
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        self.random = random.Random(seed)
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        all_headers = dict(headers or {})
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.csrf:
            all_headers["X-CSRFToken"] = self.csrf
        for attempt in range(3):
            try:
                self.connection.request(method, path, body=body, headers=all_headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt == 2:
                    raise
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(header)
            for key, morsel in cookie.items():
                self.cookies[key] = morsel.value
        return response.status, data

    def login(self) -> None:
        status, page = self.request("GET", "/login")
        match = CSRF_INPUT.search(page.decode()) or CSRF_META.search(page.decode())
        if status != 200 or match is None:
            raise RuntimeError(f"login page returned {status}")
        form = urlencode(
            {"csrf_token": match.group(1), "username": self.username, "password": self.password}
        ).encode()
        status, _ = self.request(
            "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status not in (302, 303):
            raise RuntimeError(f"login of {self.username} failed with HTTP {status}")
        status, page = self.request("GET", "/account")
        match = CSRF_META.search(page.decode())
        if match is None:
            raise RuntimeError(f"no CSRF token after login (HTTP {status})")
        self.csrf = match.group(1)

    def post_json(self, path: str, payload: dict[str, object]) -> tuple[int, dict[str, object]]:
        status, data = self.request(
            "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        return status, json.loads(data or b"{}")

    def run(
        self,
        project_id: int,
        label_ids: list[int],
        answers: int,
        result: AnnotatorResult,
        deadline: float,
        double_rate: float = 0.1,
        retry_rate: float = 0.1,
        pacing: Pacing | None = None,
    ) -> None:
        """Submit ``answers`` answers; some are sent twice, some again as a retry.

        Without ``pacing`` each answer starts when the last one is done. With it, answer k
        starts at its scheduled time, or at once when the annotator is behind, and its
        latency counts from the scheduled time.
        """
        k = 0
        while len(result.stored_answer_ids) < answers and time.monotonic() < deadline:
            if pacing is None:
                started = time.monotonic()
            else:
                started = pacing.start_of(k)
                wait = started - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                else:
                    result.behind_schedule += 1
            k += 1
            status, data = self.request("GET", f"/api/v1/projects/{project_id}/items/next?limit=1")
            if status != 200:
                result.errors.append(f"next item: HTTP {status}")
                continue
            items = json.loads(data)["items"]
            if not items:
                result.errors.append("queue empty")
                break
            payload = {
                "id": str(uuid.uuid4()),
                "item_id": items[0]["id"],
                "label_id": self.random.choice(label_ids),
                "duration_ms": self.random.randint(500, 4000),
            }
            path = f"/api/v1/projects/{project_id}/answers"
            status, body = self.post_json(path, payload)
            result.latencies_ms.append((time.monotonic() - started) * 1000)
            roll = self.random.random()
            if roll < double_rate:
                result.doubled += 1
                again_status, again = self.post_json(path, payload)
                if again_status not in (200, 201) or again.get("created") is not False:
                    result.errors.append(f"doubled request: HTTP {again_status} {again}")
            elif roll < double_rate + retry_rate:
                # A client that timed out waits and sends the same answer again.
                result.retried += 1
                time.sleep(0.01)
                status, body = self.post_json(path, payload)
            if status in (200, 201):
                result.stored_answer_ids.add(str(body["id"]))
            elif status == 409:
                result.conflicts += 1
            else:
                result.errors.append(f"answer: HTTP {status} {body}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run_load(
    base_url: str,
    project_id: int,
    label_ids: list[int],
    credentials: list[tuple[str, str]],
    answers_per_user: int,
    time_limit_s: float = 300.0,
    annotators_per_process: int = ANNOTATORS_PER_PROCESS,
    rate: float | None = None,
    on_start: Callable[[], None] | None = None,
) -> tuple[list[AnnotatorResult], float]:
    """Run the annotators, a thread each, in child processes; return results and wall time.

    Each child process runs up to ``annotators_per_process`` annotators, so one GIL does not
    queue all clients behind each other and inflate the latency they measure. Every annotator
    logs in first, and the clock starts once all of them have; ``on_start`` is called then.
    ``rate`` paces the run at that many answers per second in total (see ``pacing_for``);
    None runs a closed loop.
    """
    if annotators_per_process < 1:
        raise ValueError(f"annotators_per_process must be at least 1, got {annotators_per_process}")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be above 0 answers per second, got {rate}")
    context = multiprocessing.get_context("spawn")
    seeded = list(enumerate(credentials))
    groups = [
        seeded[start : start + annotators_per_process]
        for start in range(0, len(seeded), annotators_per_process)
    ]
    ready = context.Barrier(len(groups) + 1)
    outcomes: multiprocessing.queues.Queue[tuple[str, Any]] = context.Queue()
    args = (
        base_url,
        project_id,
        label_ids,
        answers_per_user,
        time_limit_s,
        rate,
        len(credentials),
        ready,
        outcomes,
    )
    processes = [context.Process(target=_run_group, args=(group, *args)) for group in groups]
    for process in processes:
        process.start()
    try:
        ready.wait(timeout=120)
        started = time.perf_counter()
        if on_start is not None:
            on_start()
        received = [outcomes.get(timeout=time_limit_s + 60) for _ in processes]
        seconds = time.perf_counter() - started
    except threading.BrokenBarrierError:
        received = [outcomes.get(timeout=10) for _ in processes]
        failures = [str(value) for kind, value in received if kind == "error"]
        raise RuntimeError(f"simulated annotators failed to start: {failures}") from None
    finally:
        for process in processes:
            process.join(timeout=30)
    failures = [str(value) for kind, value in received if kind == "error"]
    if failures:
        raise RuntimeError(f"simulated annotators failed: {failures}")
    by_name = {result.username: result for _, group in received for result in group}
    return [by_name[username] for username, _ in credentials], seconds


def _run_group(
    group: list[tuple[int, tuple[str, str]]],
    base_url: str,
    project_id: int,
    label_ids: list[int],
    answers_per_user: int,
    time_limit_s: float,
    rate: float | None,
    annotators: int,
    ready: Any,
    outcomes: Any,
) -> None:
    """Log in a few annotators, wait for all processes, then run them in threads.

    NOTE: in a paced run each process takes the moment it leaves the barrier as the start of
    its schedules, so processes that wake at different times are offset by that difference.
    """
    try:
        annotators_here = [
            Annotator(base_url, username, password, seed) for seed, (username, password) in group
        ]
        for annotator in annotators_here:
            annotator.login()
    except (OSError, RuntimeError, http.client.HTTPException) as error:
        ready.abort()
        outcomes.put(("error", f"{type(error).__name__}: {error}"))
        return
    results = [AnnotatorResult(annotator.username) for annotator in annotators_here]
    # The imports above (SQLAlchemy models among them) leave a heap whose full garbage
    # collection paused these clients for 30 to 40 ms, which the latencies would count.
    gc.collect()
    gc.freeze()
    ready.wait(timeout=120)
    start = time.monotonic()
    deadline = start + time_limit_s
    threads = []
    for (index, _credentials), annotator, result in zip(
        group, annotators_here, results, strict=True
    ):
        pacing = None if rate is None else pacing_for(index, annotators, rate, start)
        threads.append(
            threading.Thread(
                target=annotator.run,
                args=(project_id, label_ids, answers_per_user, result, deadline),
                kwargs={"pacing": pacing},
            )
        )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes.put(("results", results))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server at {url} did not answer within {timeout} s")


@contextmanager
def served(
    database_url: str, data_dir: Path, threads: int | None = None, server: str = "auto"
) -> Iterator[tuple[str, int]]:
    """Run ``labelandlearn serve`` with accounts in a child process; yield (URL, its pid).

    A separate process keeps the client threads from competing with the server for the
    GIL, as a browser would not.
    """
    port = free_port()
    env = {
        **os.environ,
        "LABELANDLEARN_DATA_DIR": str(data_dir),
        "LABELANDLEARN_DATABASE_URL": database_url,
        "LABELANDLEARN_ACCOUNTS": "true",
        "LABELANDLEARN_SECRET_KEY": "load-test",
        "LABELANDLEARN_LOG_LEVEL": "WARNING",
        # The project's items have no e5 vectors. An embed job would compete for the CPU, so
        # none starts and the model stays on TF-IDF alone.
        "LABELANDLEARN_EMBEDDINGS": "off",
    }
    command = [sys.executable, "-m", "labelandlearn.cli", "serve", "--port", str(port)]
    command += ["--server", server]
    if threads is not None:
        command += ["--threads", str(threads)]
    process = subprocess.Popen(command, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url, process)
        yield base_url, process.pid
    finally:
        # The server runs jobs in child processes, which outlive it when it stops mid-job.
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        process.terminate()
        process.wait(timeout=30)
        _stop_processes(children)


def _stop_processes(processes: list[psutil.Process], timeout: float = 10) -> None:
    """Terminate the processes still running, and kill those that outlast ``timeout`` s."""
    running = [process for process in processes if process.is_running()]
    for process in running:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    _gone, alive = psutil.wait_procs(running, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


def prepare_load_project(
    db: Database, annotators: int, items: int, password: str
) -> tuple[int, list[int], list[tuple[str, str]]]:
    """Create a 3-label project of ``items`` short texts and ``annotators`` member accounts.

    Returns the project id, its label ids and the (username, password) pairs.
    """
    db.upgrade()
    with db.session() as session:
        project = Project(
            name="load test",
            retrain_every=1_000_000,
            labels=[
                Label(name=name, key=str(i + 1), position=i)
                for i, name in enumerate(("negative", "useless", "positive"))
            ],
        )
        session.add(project)
        session.flush()
        session.execute(
            sa.insert(Item),
            [
                {
                    "project_id": project.id,
                    "text": f"tweet number {i}",
                    "text_hash": hashlib.sha1(f"tweet number {i}".encode()).hexdigest(),
                    "position": i,
                }
                for i in range(items)
            ],
        )
        project_id, label_ids = project.id, [label.id for label in project.labels]
    credentials = []
    for index in range(annotators):
        name = f"annotator{index:02d}"
        user_id = users.create_user(db, name, password)
        with db.session() as session:
            set_membership(session, project_id, user_id, "annotator")
        credentials.append((name, password))
    return project_id, label_ids, credentials
