"""Pieces every command shares: settings, the database, logging, errors and progress bars."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from labelandlearn.errors import LabelAndLearnError
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database

logger = logging.getLogger(__name__)

# Errors caused by what the user typed or supplied exit with 2, like a usage error. The
# others (conflicts, missing extras, too few labels, failed files) exit with 1.
INPUT_ERROR_STATUSES = {404, 413, 422}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def count(number: int, noun: str, plural: str | None = None) -> str:
    """Return "1 row" or "3 rows": the number with the noun in the form it takes."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def setting_help(name: str) -> str:
    """Return the description of the ``Settings`` field ``name``, for an option's help."""
    description = Settings.model_fields[name].description or ""
    return f"{description} [env: LABELANDLEARN_{name.upper()}]"


class CurrentStderrHandler(logging.StreamHandler):
    """A stream handler that writes to ``sys.stderr`` as it is when each record arrives.

    Test runners swap ``sys.stderr`` per invocation; a handler holding the old stream would
    write to a closed file.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        return None


def configure_logging(level: str) -> None:
    """Send log records of level ``level`` and above to stderr through one handler."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR", code=2)
    root = logging.getLogger()
    if not any(isinstance(handler, CurrentStderrHandler) for handler in root.handlers):
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(numeric)
    # Alembic reports every migration step at INFO; keep that for DEBUG runs.
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    stderr.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def exit_code_for(error: LabelAndLearnError) -> int:
    return 2 if error.http_status in INPUT_ERROR_STATUSES else 1


def describe_os_error(error: OSError) -> str:
    """Return one line naming the file and the reason of a failed file operation."""
    reason = error.strerror or str(error)
    if error.filename is not None:
        return f"cannot use {error.filename}: {reason}"
    return reason


class CliState:
    """Settings of this invocation and the database they name, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None

    def db(self) -> Database:
        """Return the database, with the schema created or upgraded to the newest version."""
        if self._db is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            database = Database(self.settings.resolved_database_url)
            database.upgrade()
            self._db = database
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None


def cli_state(ctx: typer.Context) -> CliState:
    state = ctx.find_object(CliState)
    if state is None:  # a command invoked without the root callback (tests of one command)
        state = CliState(Settings())
        ctx.obj = state
    return state


class ProgressCallback(Protocol):
    def __call__(self, fraction: float, message: str = "", *, force: bool = False) -> None: ...


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressCallback]:
    """Show a progress bar on stderr; yield a ``callback(fraction, message)`` that moves it.

    The callback also takes the ``force`` keyword of job progress callbacks; a bar redraws
    cheaply, so every call updates it.
    """
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[message]}"),
    )
    # No bar when stderr is not a terminal (CI logs, pipes): a bar's redraws only add noise.
    # There a plain line at each further tenth of the work shows that a long run moves.
    terminal = stderr.is_terminal
    printed = [0]
    with Progress(*columns, console=stderr, disable=not terminal) as progress:
        task = progress.add_task(description, total=1.0, message="")

        def update(fraction: float, message: str = "", *, force: bool = False) -> None:
            fraction = max(0.0, min(1.0, fraction))
            progress.update(task, completed=fraction, message=message)
            tenths = int(fraction * 10)
            if not terminal and tenths > printed[0]:
                printed[0] = tenths
                line = f"{description}: {tenths * 10}%" + (f", {message}" if message else "")
                stderr.print(line, markup=False, highlight=False)

        try:
            yield update
        except BaseException:
            # Removing the bar leaves the error as the last line on the screen.
            progress.remove_task(task)
            raise
        progress.update(task, completed=1.0)
        if not terminal and printed[0] < 10:
            stderr.print(f"{description}: 100%", markup=False, highlight=False)


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, for scripts."""
    import json

    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
