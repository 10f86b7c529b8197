"""Load test: simulated annotators against the real server (``labelandlearn serve``) on 127.0.0.1.

Each annotator logs in and submits answers through HTTP, with doubled requests and retries.
Afterwards the script checks that exactly annotators x answers answers are stored, that no
item got more answers than its overlap, and that none was lost; it prints throughput, latency
percentiles of next item plus submit, and the server's CPU time per answer.

Without ``--rate`` the load is a closed loop: each annotator sends its next answer as soon as
the last one returned, so the mean latency is about annotators / throughput. ``--rate N``
offers N answers per second in total on a fixed schedule (open loop), and latencies count
from each answer's scheduled start, so a slow server cannot hide its queue.

The server's CPU time is measured from the moment all annotators have logged in, so the
Argon2 password checks of the logins are left out. Most of that time holds the GIL of the one
server process, so throughput cannot go much above 1000 / (CPU ms per answer) answers per
second. Other programs on the machine disturb the CPU time less than the latencies.

    python benchmarks/load_test.py --database sqlite
    python benchmarks/load_test.py --database sqlite --rate 200
    python benchmarks/load_test.py --database postgresql \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotator_load import percentile, prepare_load_project, run_load, served  # noqa: E402

from labelandlearn.auth import users  # noqa: E402
from labelandlearn.storage.db import Database  # noqa: E402
from labelandlearn.storage.models import Answer  # noqa: E402

PASSWORD = "load test password 1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--answers", type=int, default=100, help="answers per annotator")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="server request threads (default: the server's default, 4)",
    )
    parser.add_argument(
        "--server", choices=("auto", "waitress", "gunicorn"), default="auto", help="WSGI server"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="answers per second offered in total, spread evenly over the annotators "
        "(open loop); without it each annotator sends its next answer when the last returned",
    )
    args = parser.parse_args()
    if args.rate is not None and args.rate <= 0:
        parser.error(f"--rate must be above 0 answers per second, got {args.rate}")

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
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
            db.upgrade()
            users.create_user(db, "admin", PASSWORD, is_admin=True)
            project_id, label_ids, credentials = prepare_load_project(
                db, args.annotators, args.annotators * args.answers + 500, PASSWORD
            )
            with served(url, data_dir, args.threads, args.server) as (base_url, pid):
                cpu_at_start: list[tuple[float, float]] = []
                results, seconds = run_load(
                    base_url,
                    project_id,
                    label_ids,
                    credentials,
                    args.answers,
                    time_limit_s=time_limit_s(args),
                    rate=args.rate,
                    on_start=lambda: cpu_at_start.append(server_cpu_seconds(pid)),
                )
                user_end, system_end = server_cpu_seconds(pid)
            check(db, results, seconds, args)
            user_s, system_s = user_end - cpu_at_start[0][0], system_end - cpu_at_start[0][1]
            per_answer_ms = 1000 * (user_s + system_s) / expected_answers(args)
            print(
                f"server CPU after the logins: {user_s + system_s:.1f} s (user {user_s:.1f} s, "
                f"system {system_s:.1f} s), {per_answer_ms:.2f} ms per answer; "
                f"load average at the end: {os.getloadavg()[0]:.1f}"
            )
        finally:
            db.dispose()
            if schema is not None:
                with admin.begin() as connection:
                    connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 0


def server_cpu_seconds(pid: int) -> tuple[float, float]:
    """Return the (user, system) CPU seconds of the server process and its workers so far."""
    root = psutil.Process(pid)
    user = system = 0.0
    for process in (root, *root.children(recursive=True)):
        times = process.cpu_times()
        user += times.user
        system += times.system
    return user, system


def time_limit_s(args: argparse.Namespace) -> float:
    """Return the time the annotators get: 300 s, or twice the schedule of a slow paced run."""
    if args.rate is None:
        return 300.0
    return max(300.0, 2 * expected_answers(args) / args.rate)


def expected_answers(args: argparse.Namespace) -> int:
    return int(args.annotators * args.answers)


def check(db: Database, results: list, seconds: float, args: argparse.Namespace) -> None:
    expected = expected_answers(args)
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
    offered = "closed loop" if args.rate is None else f"offered {args.rate:g} answers/s"
    print(
        f"database: {args.database}; {args.annotators} annotators x {args.answers} answers; "
        f"{offered}"
    )
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
    if args.rate is not None:
        late = sum(result.behind_schedule for result in results)
        print(f"answers sent after their scheduled start: {late} of {len(latencies)}")
    p50, p95, p99 = (percentile(latencies, q) for q in (0.5, 0.95, 0.99))
    since = "the scheduled start" if args.rate is not None else "the send"
    print(
        f"next item + submit latency since {since} (ms): "
        f"p50 {p50:.1f}, p95 {p95:.1f}, p99 {p99:.1f}"
    )
    if len(stored) != expected or client_ids - stored or max(per_item, default=0) > 1 or errors:
        raise SystemExit("FAILED: answers lost, doubled or over the overlap; see above")


if __name__ == "__main__":
    raise SystemExit(main())
