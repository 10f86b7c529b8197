"""The ``labelandlearn`` command line: demo, serve, projects, import, train, export, predict.

Errors meant for the user (``labelandlearn.errors``) print as one ``error: ...`` line on stderr
and exit with 2 when the input was wrong (not found, invalid, unreadable file) or 1 otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import pydantic
import typer
from typer.core import TyperGroup

from labelandlearn import __version__
from labelandlearn.cli import data, projects, serve, team, users
from labelandlearn.cli.common import (
    CliState,
    configure_logging,
    describe_os_error,
    exit_code_for,
    fail,
    setting_help,
)
from labelandlearn.errors import LabelAndLearnError
from labelandlearn.settings import ENV_PREFIX, Settings, get_settings

# Failures of file operations on paths the user gave; any other OSError is a bug and keeps
# its traceback.
USER_FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                    FileExistsError)


class ErrorReportingGroup(TyperGroup):
    """Turns domain errors of any subcommand into one line on stderr and an exit code."""

    # ctx is Any: typer 0.29 passes its own vendored click Context, older releases click's.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LabelAndLearnError as error:
            fail(str(error), code=exit_code_for(error))
        except USER_FILE_ERRORS as error:
            fail(describe_os_error(error), code=2)
        except pydantic.ValidationError as error:
            fail(f"invalid setting: {_first_pydantic_error(error)}", code=2)
        finally:
            state = ctx.find_object(CliState)
            if state is not None:
                state.close()


def _first_pydantic_error(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    name = f"LABELANDLEARN_{location.upper()}" if location else "a setting"
    return f"{name}: {first.get('msg', 'invalid value')}"


app = typer.Typer(
    cls=ErrorReportingGroup,
    help="Label short texts in a browser while a classifier learns from every answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"labelandlearn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help=setting_help("data_dir"), show_default=False)
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help=setting_help("database_url"), show_default=False),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help=setting_help("log_level"), show_default=False),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Label short texts in a browser while a classifier learns from every answer."""
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    if log_level is not None:
        overrides["log_level"] = log_level
    try:
        settings = Settings(**overrides)
    except pydantic.ValidationError as error:
        fail(f"invalid setting: {_first_pydantic_error(error)}", code=2)
    # Code that reads the process settings (the embedding cache folder, job child processes)
    # must see the options too, or `--data-dir` would cache vectors in the default folder.
    for name, value in overrides.items():
        os.environ[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    get_settings.cache_clear()
    configure_logging(settings.log_level)
    ctx.obj = CliState(settings)


serve.register(app)
projects.register(app)
data.register(app)
users.register(app)
team.register(app)


def main() -> None:
    """Run the command line (the ``labelandlearn`` entry point)."""
    app()
