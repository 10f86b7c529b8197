"""``labelandlearn users create``: accounts for servers started with accounts enabled."""

from __future__ import annotations

from typing import Annotated

import typer

from labelandlearn.cli.common import cli_state, stdout

users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


@users_app.command("create")
def create(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name (3 to 150 letters, digits, _.@-).")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="LABELANDLEARN_NEW_PASSWORD",
            help="Password; asked for when not given. Prefer the prompt: options show up in "
            "the shell history.",
        ),
    ],
    admin: Annotated[bool, typer.Option("--admin", help="Give the account every right.")] = False,
) -> None:
    """Create an account; the password must pass the password policy."""
    from labelandlearn.auth.users import create_user

    user_id = create_user(cli_state(ctx).db(), username, password, is_admin=admin)
    role = "admin" if admin else "user"
    stdout.print(f"created {role} {username!r} (id {user_id})", markup=False)
