"""``labelandlearn serve``, ``labelandlearn demo`` and ``labelandlearn db upgrade``."""

from __future__ import annotations

import logging
import os
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from labelandlearn.cli.common import CliState, cli_state, fail, setting_help, stdout
from labelandlearn.errors import NotEnoughLabelsError
from labelandlearn.server import (
    DEFAULT_THREADS,
    Backend,
    ServerOptions,
    check_bind_host,
    check_port_free,
    run_server,
)
from labelandlearn.storage.db import Database
from labelandlearn.storage.models import Project

logger = logging.getLogger(__name__)

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)

HostOption = Annotated[
    str | None, typer.Option("--host", help=setting_help("host"), show_default="127.0.0.1")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help=setting_help("port"), show_default="8000")
]
ThreadsOption = Annotated[
    int,
    typer.Option(
        "--threads",
        min=1,
        help="Request threads of the one server process. On SQLite, 1 gives the lowest "
        "labelling latency, but a slow page then makes every annotator wait.",
    ),
]
ServerChoice = Annotated[
    str,
    typer.Option(
        "--server",
        help="WSGI server: auto (waitress), waitress or gunicorn.",
    ),
]
# gunicorn's arbiter exits with 3 when the worker cannot boot and 4 when the app cannot load.
GUNICORN_BOOT_FAILURES = {3, 4}


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("demo")(demo)
    app.add_typer(db_app, name="db")


def _backend(value: str) -> Backend:
    if value not in ("auto", "gunicorn", "waitress"):
        fail(f"unknown server {value!r}; use auto, gunicorn or waitress", code=2)
    return value  # type: ignore[return-value]


def _announce(open_browser: bool, start_page: str = "") -> Callable[[str], None]:
    """Return the server's ready callback: print the URL, and open the browser if asked.

    ``start_page`` is a path below the server's URL to print and open as well.
    """

    def announce(url: str) -> None:
        # Runs in the serving process once the app is loaded, so the URL responds at once.
        print(f"Label and Learn is running at {url} (Ctrl+C stops it)", flush=True)
        page = url + start_page.lstrip("/")
        if start_page:
            print(f"Label the demo tweets at {page}", flush=True)
        if open_browser and _has_graphical_browser():
            threading.Thread(target=webbrowser.open, args=(page,), daemon=True).start()

    return announce


def _has_graphical_browser() -> bool:
    # Without a display, Python's webbrowser falls back to text browsers such as lynx, which
    # would take over the terminal the server logs to.
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _serve(state: CliState, options: ServerOptions) -> None:
    state.close()
    try:
        run_server(state.settings, options)
    except SystemExit as exit_:
        if exit_.code in GUNICORN_BOOT_FAILURES:
            fail("the server failed to start; the log lines above name the cause")
        raise


def serve(
    ctx: typer.Context,
    host: HostOption = None,
    port: PortOption = None,
    threads: ThreadsOption = DEFAULT_THREADS,
    server: ServerChoice = "auto",
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request on stderr.")
    ] = False,
    accounts: Annotated[
        bool | None,
        typer.Option("--accounts/--no-accounts", help=setting_help("accounts"),
                     show_default=False),
    ] = None,
) -> None:
    """Start the web app (one process, several threads) until Ctrl+C."""
    state = cli_state(ctx)
    if accounts is not None:
        state.settings = state.settings.model_copy(update={"accounts": accounts})
    settings = state.settings
    options = ServerOptions(
        host=host or settings.host,
        port=port if port is not None else settings.port,
        threads=threads,
        backend=_backend(server),
        log_level=settings.log_level,
        access_log=access_log,
        on_ready=_announce(open_browser=False),
    )
    _serve(state, options)


def demo(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Use this CSV of tweets (columns text, date, rating) instead of downloading "
            "the demo data.",
        ),
    ] = None,
    host: HostOption = None,
    port: PortOption = None,
    threads: ThreadsOption = DEFAULT_THREADS,
    no_open: Annotated[
        bool, typer.Option("--no-open", help="Do not open the browser.")
    ] = False,
) -> None:
    """Load the demo project (Ethereum tweets), train a first model and start the web app."""
    state = cli_state(ctx)
    settings = state.settings
    options = ServerOptions(
        host=host or settings.host,
        port=port if port is not None else settings.port,
        threads=threads,
        log_level=settings.log_level,
    )
    # Checked before the slower data steps, so a busy port fails at once.
    check_bind_host(options.host, settings.accounts)
    check_port_free(options.host, options.port)

    from labelandlearn.demo import fetch_demo_data, load_demo_project

    if data is not None:
        path: Path = data
    else:
        source = fetch_demo_data(settings.data_dir)
        path = source.path
        stdout.print(f"demo data: {path} ({source.origin})", markup=False)
    db = state.db()
    project_id = load_demo_project(db, path)
    _ensure_first_model(db, project_id)
    options.on_ready = _announce(
        open_browser=not no_open, start_page=f"projects/{project_id}/label"
    )
    _serve(state, options)


def _ensure_first_model(db: Database, project_id: int) -> None:
    with db.session() as session:
        project = session.get(Project, project_id)
        has_model = project is not None and project.current_model_id is not None
    if has_model:
        return
    from labelandlearn.cli.data import train_and_score

    try:
        train_and_score(db, project_id, "Training the first model")
    except NotEnoughLabelsError as error:
        # The demo still works without a model: predictions appear after the first retrain.
        logger.warning("no first model for the demo project: %s", error)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create the database schema, or upgrade an older database in place."""
    state = cli_state(ctx)
    state.db()
    safe_url = make_url(state.settings.resolved_database_url).render_as_string(hide_password=True)
    stdout.print(f"database {safe_url} is at the newest schema version", markup=False)
