"""Import rate and HTTP latency of the labelling hot path on a 100,000-item project.

Builds a project by repeating the Ethereum tweets (the first copy keeps its labels, the other
copies are unlabelled), imports it and times the import, trains a first model, starts the real
server (`labelandlearn serve`, one process with threads) on a free 127.0.0.1 port, then acts as
one labeller: GET the next item, POST its label (which runs the online model update), repeat.
It reports p50/p95/p99 of both requests and the server's peak resident memory.

    .venv/bin/python benchmarks/http_latency.py [--items 100000] [--requests 500]

Targets: next item p95 under 20 ms, label submit p95 under 30 ms.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASET = REPO_ROOT.parent / "shared" / "datasets" / "ethereum-tweets" / "labelled.csv"
RATING_LABELS = {"-1": "negative", "0": "useless", "1": "positive"}
TARGETS_MS = {"next item": 20.0, "label submit": 30.0}
WARMUP_REQUESTS = 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="items in the project")
    parser.add_argument("--requests", type=int, default=500, help="timed requests of each kind")
    parser.add_argument("--threads", type=int, default=8, help="server request threads")
    parser.add_argument(
        "--retrain-every",
        type=int,
        default=50,
        help="answers between background retrains (the project default is 50)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args()


def machine_description() -> dict[str, Any]:
    memory_gib = psutil.virtual_memory().total / 1024**3
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- data


def build_file(target: Path, items: int) -> tuple[int, dict[str, str]]:
    """Write ``items`` rows by repeating the tweets; return (labelled rows, text -> label)."""
    with DATASET.open(newline="", encoding="utf-8") as handle:
        tweets = [(row["text"], row["rating"], row["date"]) for row in csv.DictReader(handle)]
    label_of = {text: RATING_LABELS[rating] for text, rating, _date in tweets}
    labelled = 0
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "date", "rating"])
        for index in range(items):
            text, rating, date = tweets[index % len(tweets)]
            first_copy = index < len(tweets)
            labelled += first_copy
            writer.writerow([text, date, rating if first_copy else ""])
    return labelled, label_of


def import_and_train(data_dir: Path, source: Path, retrain_every: int) -> dict[str, Any]:
    """Create the project, import ``source``, train and score; return timings."""
    from labelandlearn.ingest.importer import import_file
    from labelandlearn.ingest.mapping import ColumnMapping
    from labelandlearn.learning.scoring import score_project
    from labelandlearn.learning.training import train_project
    from labelandlearn.services.projects import LabelSpec, ProjectSpec, create_project
    from labelandlearn.storage.db import Database

    db = Database(f"sqlite:///{data_dir / 'labelandlearn.db'}")
    db.upgrade()
    project_id = create_project(
        db,
        ProjectSpec(
            name="ethereum-100k",
            labels=[LabelSpec("negative"), LabelSpec("useless"), LabelSpec("positive")],
            label_column="rating",
            retrain_every=retrain_every,
        ),
    )
    started = time.perf_counter()
    report = import_file(
        db,
        project_id,
        source,
        source.name,
        ColumnMapping(text_column="text", label_column="rating", label_map=RATING_LABELS),
        duplicates="keep",
    )
    import_seconds = time.perf_counter() - started

    started = time.perf_counter()
    train_project(db, project_id, None)
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    score_project(db, project_id)
    score_seconds = time.perf_counter() - started
    db.dispose()
    return {
        "project_id": project_id,
        "rows_imported": report.rows_imported,
        "import_seconds": import_seconds,
        "import_rows_per_s": report.rows_read / import_seconds,
        "train_seconds": train_seconds,
        "score_seconds": score_seconds,
    }


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(data_dir: Path, port: int, threads: int) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LABELANDLEARN")}
    # No embed job: embedding 100,000 items with e5 would take the CPU for hours, so the
    # default model runs on TF-IDF alone, as it does until a project's embed job finishes.
    env.update(LABELANDLEARN_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1",
               LABELANDLEARN_LOG_LEVEL="WARNING", LABELANDLEARN_EMBEDDINGS="off")
    process = subprocess.Popen(
        [sys.executable, "-m", "labelandlearn.cli", "serve", "--port", str(port),
         "--threads", str(threads)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if "is running at" in line:
            threading.Thread(target=_drain, args=(process,), daemon=True).start()
            return process
        sys.stderr.write(line)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("the server did not start; its output is above")


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sys.stderr.write(line)


class MemorySampler(threading.Thread):
    """Samples the resident memory of the server and its children every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_bytes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            try:
                processes = [self.root, *self.root.children(recursive=True)]
                total = sum(process.memory_info().rss for process in processes)
            except psutil.NoSuchProcess:
                return
            self.peak_bytes = max(self.peak_bytes, total)


# --------------------------------------------------------------------------- HTTP client


class Client:
    """One keep-alive connection with the session cookie and CSRF token of the pages."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = ""
        self.csrf_token = ""

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        headers = {"Accept": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
            headers["X-CSRFToken"] = self.csrf_token
        started = time.perf_counter()
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        content_type = response.getheader("Content-Type") or ""
        payload = json.loads(raw) if "json" in content_type else raw.decode(errors="replace")
        return response.status, payload, elapsed_ms

    def open_session(self) -> None:
        status, page, _ = self.request("GET", "/")
        if status != 200:
            raise SystemExit(f"GET / returned {status}")
        match = re.search(r'name="csrf-token" content="([^"]+)"', page)
        if match is None:
            raise SystemExit("the page carries no csrf-token meta tag")
        self.csrf_token = match.group(1)


def label_items(
    client: Client, project_id: int, label_of: dict[str, str], count: int
) -> dict[str, list[float]]:
    """Label ``count`` items as one labeller does; return the latencies in ms by request."""
    timings: dict[str, list[float]] = {"next item": [], "label submit": []}
    path = f"/api/v1/projects/{project_id}/items/next?limit=1"
    for _ in range(count):
        status, payload, next_ms = client.request("GET", path)
        if status != 200 or not payload["items"]:
            raise SystemExit(f"next item failed: {status} {payload}")
        item = payload["items"][0]
        prediction = item.get("prediction") or {}
        answer = {
            "id": str(uuid.uuid4()),
            "item_id": item["id"],
            "label": label_of.get(item["text"], "useless"),
            "predicted_label_id": prediction.get("label_id"),
            "predicted_confidence": prediction.get("confidence"),
            "model_version_id": prediction.get("model_version_id"),
        }
        status, payload, submit_ms = client.request(
            "POST", f"/api/v1/projects/{project_id}/answers", answer
        )
        if status != 201:
            raise SystemExit(f"answer failed: {status} {payload}")
        timings["next item"].append(next_ms)
        timings["label submit"].append(submit_ms)
    return timings


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


# --------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    if not DATASET.exists():
        print(f"skipped: {DATASET} is not present on this machine; it holds the tweets")
        return 0
    machine = machine_description()
    with tempfile.TemporaryDirectory(prefix="lnl-bench-") as temp:
        data_dir = Path(temp)
        source = data_dir / "ethereum-100k.csv"
        labelled, label_of = build_file(source, args.items)
        print(f"built {args.items} rows ({labelled} labelled) in {source.name}")
        setup = import_and_train(data_dir, source, args.retrain_every)
        print(
            f"import: {setup['rows_imported']} rows in {setup['import_seconds']:.1f} s "
            f"({setup['import_rows_per_s']:,.0f} rows/s); first training "
            f"{setup['train_seconds']:.1f} s, scoring {setup['score_seconds']:.1f} s"
        )

        port = free_port()
        server = start_server(data_dir, port, args.threads)
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            client = Client(port)
            client.open_session()
            label_items(client, setup["project_id"], label_of, WARMUP_REQUESTS)
            started = time.perf_counter()
            timings = label_items(client, setup["project_id"], label_of, args.requests)
            elapsed = time.perf_counter() - started
        finally:
            sampler.stopped.set()
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)

    results = {
        "machine": machine,
        "items": args.items,
        "requests": args.requests,
        "threads": args.threads,
        "retrain_every": args.retrain_every,
        **{key: value for key, value in setup.items() if key != "project_id"},
        "answers_per_s": args.requests / elapsed,
        "latency_ms": {name: percentiles(values) for name, values in timings.items()},
        "server_peak_rss_mib": sampler.peak_bytes / 1024**2,
    }
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    missed = [
        name for name, target in TARGETS_MS.items()
        if results["latency_ms"][name]["p95"] >= target
    ]
    return 1 if missed else 0


def print_table(results: dict[str, Any]) -> None:
    machine = results["machine"]
    print(
        f"\nmachine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Python {machine['python']}"
    )
    print(f"{'request':<14} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'target':>10}")
    for name, figures in results["latency_ms"].items():
        target = f"p95 < {TARGETS_MS[name]:.0f}"
        print(
            f"{name:<14} {figures['p50']:>8.1f} {figures['p95']:>8.1f} {figures['p99']:>8.1f} "
            f"{figures['max']:>8.1f} {target:>10}"
        )
    print(
        f"import {results['import_rows_per_s']:,.0f} rows/s; first training "
        f"{results['train_seconds']:.1f} s; {results['answers_per_s']:.1f} answers/s for one "
        f"labeller; server peak RSS {results['server_peak_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    sys.exit(main())
