"""Load test: simulated annotators against the real server (gunicorn, gthread) on 127.0.0.1.

Each annotator logs in and submits answers through HTTP, with doubled requests and retries.
Afterwards the script checks that exactly annotators x answers answers are stored, that no
item got more answers than its overlap, and that none was lost; it prints throughput and
latency percentiles of next item plus submit.

    python benchmarks/load_test.py --database sqlite
    python benchmarks/load_test.py --database postgresql \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotator_load import percentile, run_load  # noqa: E402

from labelandlearn.auth import users  # noqa: E402
from labelandlearn.auth.permissions import set_membership  # noqa: E402
from labelandlearn.storage.db import Database  # noqa: E402
from labelandlearn.storage.models import Answer, Item, Label, Project  # noqa: E402

PASSWORD = "load test password 1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(
    db: Database, annotators: int, items: int
) -> tuple[int, list[int], list[tuple[str, str]]]:
    db.upgrade()
    users.create_user(db, "admin", PASSWORD, is_admin=True)
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
        user_id = users.create_user(db, name, PASSWORD)
        with db.session() as session:
            set_membership(session, project_id, user_id, "annotator")
        credentials.append((name, PASSWORD))
    return project_id, label_ids, credentials


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server at {url} did not answer within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--answers", type=int, default=100, help="answers per annotator")
    parser.add_argument("--threads", type=int, default=16, help="server request threads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        schema = None
        if args.database == "sqlite":
            url = f"sqlite:///{data_dir / 'load.db'}"
        else:
            schema = f"load_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.postgres_url)
            with admin.begin() as connection:
                connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            url = f"{args.postgres_url}?options=-csearch_path%3D{schema}"
        db = Database(url)
        try:
            project_id, label_ids, credentials = prepare(
                db, args.annotators, args.annotators * args.answers + 500
            )
            port = free_port()
            env = {
                **os.environ,
                "LABELANDLEARN_DATA_DIR": str(data_dir),
                "LABELANDLEARN_DATABASE_URL": url,
                "LABELANDLEARN_ACCOUNTS": "true",
                "LABELANDLEARN_SECRET_KEY": "load-test",
                "LABELANDLEARN_LOG_LEVEL": "WARNING",
            }
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "labelandlearn",
                    "serve",
                    "--port",
                    str(port),
                    "--threads",
                    str(args.threads),
                ],
                env=env,
            )
            base_url = f"http://127.0.0.1:{port}"
            try:
                wait_until_up(base_url, server)
                results, seconds = run_load(
                    base_url, project_id, label_ids, credentials, args.answers
                )
            finally:
                server.terminate()
                server.wait(timeout=30)
            check(db, results, seconds, args)
        finally:
            db.dispose()
            if schema is not None:
                with admin.begin() as connection:
                    connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 0


def check(db: Database, results: list, seconds: float, args: argparse.Namespace) -> None:
    expected = args.annotators * args.answers
    client_ids = set().union(*(result.stored_answer_ids for result in results))
    with db.session() as session:
        stored = set(session.scalars(sa.select(Answer.id)))
        per_item = (
            session.execute(sa.select(sa.func.count()).select_from(Answer).group_by(Answer.item_id))
            .scalars()
            .all()
        )
    latencies = [value for result in results for value in result.latencies_ms]
    errors = [error for result in results for error in result.errors]
    print(f"database: {args.database}; {args.annotators} annotators x {args.answers} answers")
    print(
        f"stored answers: {len(stored)} (expected {expected}); client-confirmed: "
        f"{len(client_ids)}; lost: {len(client_ids - stored)}; most answers on one item: "
        f"{max(per_item, default=0)}"
    )
    print(
        f"doubled requests: {sum(r.doubled for r in results)}, retries: "
        f"{sum(r.retried for r in results)}, conflicts: {sum(r.conflicts for r in results)}, "
        f"errors: {len(errors)}"
    )
    print(f"throughput: {len(client_ids) / seconds:.0f} answers/s over {seconds:.1f} s")
    p50, p95, p99 = (percentile(latencies, q) for q in (0.5, 0.95, 0.99))
    print(f"next item + submit latency (ms): p50 {p50:.1f}, p95 {p95:.1f}, p99 {p99:.1f}")
    if len(stored) != expected or client_ids - stored or max(per_item, default=0) > 1 or errors:
        raise SystemExit("FAILED: answers lost, doubled or over the overlap; see above")


if __name__ == "__main__":
    raise SystemExit(main())
